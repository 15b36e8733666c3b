{#- The body of a staging model: the raw topic's columns typed, cleaned and renamed,
    one row per event (sessionId, itemInSession): duplicate deliveries keep the lowest
    Kafka (partition, offset). `columns` are the topic-specific select expressions
    (over the raw columns). The surrogate keys every consumer
    needs (event_id, location_key) are computed here once. Staging models are
    incremental tables replaced over the load window, so each event is typed, deduped
    and keyed once, not once per consumer. The load time (raw.loaded_at) stays in raw:
    a reload changes it, and staging must not change when its events do not. -#}
{% macro stage_events(topic, columns, keys=[]) -%}
{%- set keys = [location_key_spec()] + keys -%}
{%- set passthrough = new_event_columns(topic, columns) -%}
with source as {{ inline_cte() }} (
  select * from {{ source('raw', topic) }}
  where {{ incremental_window('event_hour') }}
),
deduped as {{ inline_cte() }} (
  {{ first_deliveries('source') }}
){{ key_lookup_ctes('deduped', keys) }}
select
  {{ event_key('sessionId', 'itemInSession') }} as event_id,
  {{ staged_key(location_key_spec()) }} as location_key,
  cast(sessionId as {{ dbt.type_bigint() }}) as session_id,
  cast(itemInSession as {{ dbt.type_int() }}) as item_in_session,
  ts,
  event_hour,
  {% for c in columns %}{{ c }},
  {% endfor -%}
  {% for c in passthrough %}{{ adapter.quote(c) }} as {{ snake_case(c) }},
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
from deduped
{{- key_lookup_joins('deduped', keys) }}
{%- endmacro %}


{#- Event fields added to the schema (src/musify/events.py) after this model was
    written: the raw table's columns that no expression of the model uses and that
    are not load bookkeeping. They pass through under their snake_case names, so a new
    optional field reaches staging without a change here (the staging models append
    new columns: on_schema_change in dbt_project.yml). -#}
{% macro new_event_columns(topic, columns) -%}
  {%- set used = ['sessionId', 'itemInSession', 'ts', 'event_hour', 'city', 'zip', 'state',
                  'userAgent', 'lat', 'lon', 'userId', 'firstName', 'lastName', 'gender',
                  'registration', 'tag', 'kafka_partition', 'kafka_offset',
                  'kafka_timestamp', 'ingested_at', 'loaded_at', 'lake_snapshot',
                  'extra'] -%}
  {%- set expressions = columns | join(' ') -%}
  {%- set found = [] -%}
  {%- if execute -%}
    {%- for c in adapter.get_columns_in_relation(source('raw', topic)) -%}
      {%- if c.name not in used
            and not modules.re.search('\\b' ~ c.name ~ '\\b', expressions) -%}
        {%- do found.append(c.name) -%}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
  {{ return(found) }}
{%- endmacro %}

{#- camelCase -> snake_case, as the staging models name the event fields. -#}
{% macro snake_case(name) -%}
  {{ return(modules.re.sub('([a-z0-9])([A-Z])', '\\1_\\2', name) | lower) }}
{%- endmacro %}


{#- The rows of `relation` (a CTE of raw rows) minus duplicate deliveries: per event
    (event_hour, sessionId, itemInSession) the one with the lowest Kafka (partition,
    offset), then ingested_at. Columns: the raw ones, plus delivery_rank (always 1). -#}
{% macro first_deliveries(relation) -%}
  {{ return(adapter.dispatch('first_deliveries', 'musify')(relation)) }}
{%- endmacro %}

{% macro musify_delivery_rank() -%}
  row_number() over (
    partition by event_hour, sessionId, itemInSession
    order by kafka_partition, kafka_offset, ingested_at
  )
{%- endmacro %}

{% macro default__first_deliveries(relation) -%}
  select *
  from (
    select {{ relation }}.*, {{ musify_delivery_rank() }} as delivery_rank
    from {{ relation }}
  ) as ranked
  where delivery_rank = 1
{%- endmacro %}

{#- DuckDB: a window over every row sorts the whole table with all its columns, though
    duplicates are rare. So only the events delivered more than once (found by a
    narrow hash aggregate) are ranked; the rest pass through (anti join). The same
    result as the default, in about a tenth of the time. -#}
{% macro duckdb__first_deliveries(relation) -%}
  {%- set same -%}
    d.event_hour is not distinct from r.event_hour
    and d.sessionId is not distinct from r.sessionId
    and d.itemInSession is not distinct from r.itemInSession
  {%- endset -%}
  with duplicated as (
    select event_hour, sessionId, itemInSession
    from {{ relation }}
    group by event_hour, sessionId, itemInSession
    having count(*) > 1
  )
  select r.*, 1 as delivery_rank
  from {{ relation }} as r
  anti join duplicated as d on {{ same }}
  union all
  select *
  from (
    select r.*, {{ musify_delivery_rank() }} as delivery_rank
    from {{ relation }} as r
    semi join duplicated as d on {{ same }}
  ) as ranked
  where delivery_rank = 1
{%- endmacro %}

{#- Surrogate keys of staged events. A spec names the key, the raw columns it depends
    on and the values it is computed from (expressions over those columns), so that a
    key here equals surrogate_key() over the same cleaned values in any other model
    (dim_songs computes song_key and artist_key from its own columns). -#}
{% macro location_key_spec() -%}
  {{ return({'name': 'location', 'columns': ['city', 'state', 'zip', 'lat', 'lon'],
             'values': [clean_string('city'), 'upper(' ~ clean_string('state') ~ ')',
                        clean_string('zip'), 'lat', 'lon']}) }}
{%- endmacro %}

{% macro song_key_spec() -%}
  {{ return({'name': 'song', 'columns': ['artist', 'song', 'duration'],
             'values': [clean_string('artist'), clean_string('song'),
                        'cast(duration as ' ~ dbt.type_float() ~ ')']}) }}
{%- endmacro %}

{% macro artist_key_spec() -%}
  {{ return({'name': 'artist', 'columns': ['artist'], 'values': [clean_string('artist')]}) }}
{%- endmacro %}

{#- The key of a spec in the select list of stage_events. -#}
{% macro staged_key(spec) -%}
  {{ return(adapter.dispatch('staged_key', 'musify')(spec)) }}
{%- endmacro %}

{#- Extra CTEs (starting with a comma) and joins that staged_key() may need. -#}
{% macro key_lookup_ctes(relation, specs) -%}
  {{ return(adapter.dispatch('key_lookup_ctes', 'musify')(relation, specs)) }}
{%- endmacro %}

{% macro key_lookup_joins(relation, specs) -%}
  {{ return(adapter.dispatch('key_lookup_joins', 'musify')(relation, specs)) }}
{%- endmacro %}

{#- Default: the digest computed on every row. -#}
{% macro default__staged_key(spec) -%}
  {{ surrogate_key(spec['values']) }}
{%- endmacro %}

{% macro default__key_lookup_ctes(relation, specs) -%}{%- endmacro %}

{% macro default__key_lookup_joins(relation, specs) -%}{%- endmacro %}

{#- DuckDB: building the key text and its digest costs ~1 us per row, most of a staging
    model's time, while millions of events name only thousands of distinct locations
    and songs. So each key is computed once per distinct combination of its raw
    columns and joined back (a hash join on those columns, null-safe), same values. -#}
{% macro duckdb__staged_key(spec) -%}
  lookup_{{ spec['name'] }}.surrogate
{%- endmacro %}

{% macro duckdb__key_lookup_ctes(relation, specs) -%}
  {%- for spec in specs %},
lookup_{{ spec['name'] }} as (
  select
    {% for c in spec['columns'] %}{{ c }} as natural_{{ loop.index0 }},
    {% endfor %}{{ surrogate_key(spec['values']) }} as surrogate
  from (select distinct {{ spec['columns'] | join(', ') }} from {{ relation }}) as combinations
)
  {%- endfor %}
{%- endmacro %}

{% macro duckdb__key_lookup_joins(relation, specs) -%}
  {%- for spec in specs %}
left join lookup_{{ spec['name'] }} on
  {%- for c in spec['columns'] %}
  {% if not loop.first %}and {% endif %}{{ relation }}.{{ c }} is not distinct from lookup_{{ spec['name'] }}.natural_{{ loop.index0 }}
  {%- endfor %}
  {%- endfor %}
{%- endmacro %}

{#- A hint for CTEs read several times: DuckDB would materialize them (a copy of every
    column of millions of rows); scanning the columnar table again costs far less. -#}
{% macro inline_cte() -%}
  {{ return(adapter.dispatch('inline_cte', 'musify')()) }}
{%- endmacro %}

{% macro default__inline_cte() -%}{%- endmacro %}

{% macro duckdb__inline_cte() -%}not materialized{%- endmacro %}
