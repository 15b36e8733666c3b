{#- The body of a staging model: the raw topic's columns typed, cleaned and renamed,
    one row per event (sessionId, itemInSession): duplicate deliveries keep the lowest
    Kafka (partition, offset). `columns` are the topic-specific select expressions
    (they may use the cleaned columns of `cleaned`). The surrogate keys every consumer
    needs (event_id, location_key) are computed here once. Staging models are
    incremental tables replaced over the load window, so each event is typed, deduped
    and keyed once, not once per consumer. The load time (raw.loaded_at) stays in raw:
    a reload changes it, and staging must not change when its events do not. -#}
{% macro stage_events(topic, columns, has_user=true) -%}
with source as (
  select * from {{ source('raw', topic) }}
  where {{ incremental_window('event_hour') }}
),
ranked as (
  select
    source.*,
    row_number() over (
      partition by event_hour, sessionId, itemInSession
      order by kafka_partition, kafka_offset, ingested_at
    ) as delivery_rank
  from source
)
select
  {{ surrogate_key(['sessionId', 'itemInSession']) }} as event_id,
  {{ surrogate_key([clean_string('city'), 'upper(' ~ clean_string('state') ~ ')',
                    clean_string('zip'), 'lat', 'lon']) }} as location_key,
  cast(sessionId as {{ dbt.type_bigint() }}) as session_id,
  cast(itemInSession as {{ dbt.type_int() }}) as item_in_session,
  ts,
  event_hour,
  {% for c in columns %}{{ c }},
  {% endfor -%}
  {{ clean_string('city') }} as city,
  {{ clean_string('zip') }} as zip,
  upper({{ clean_string('state') }}) as state_code,
  {{ clean_string('userAgent') }} as user_agent,
  lat,
  lon,
  cast(userId as {{ dbt.type_bigint() }}) as user_id,
  {{ clean_string('firstName') }} as first_name,
  {{ clean_string('lastName') }} as last_name,
  upper({{ clean_string('gender') }}) as gender,
  registration,
  {{ clean_string('tag') }} as tag,
  kafka_partition,
  kafka_offset,
  kafka_timestamp,
  ingested_at
from ranked
where delivery_rank = 1
{%- endmacro %}
