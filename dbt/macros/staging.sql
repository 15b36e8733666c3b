{#- The body of a staging model: the raw topic's columns typed, cleaned and renamed,
    one row per event (sessionId, itemInSession): duplicate deliveries keep the lowest
    Kafka (partition, offset). `columns` are the topic-specific select expressions. -#}
{% macro stage_events(topic, columns, has_user=true) -%}
with source as (
  select * from {{ source('raw', topic) }}
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
  ingested_at,
  loaded_at
from ranked
where delivery_rank = 1
{%- endmacro %}
