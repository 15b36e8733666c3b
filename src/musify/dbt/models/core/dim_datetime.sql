{#- One row per hour from the first to the last event hour in raw (no fixed end).
    Incremental: only the hours before the first or after the last known hour are
    added, bounded by the window's own events, so an hourly run writes at most the
    new hours (and fills any gap since the last one). -#}
{{ config(
    materialized='incremental',
    incremental_strategy=append_strategy(),
) }}

{%- set raw_hours = source('raw', 'page_view_events') %}

with spine as (
    {% if is_incremental() %}
    {#- Earlier hours: from the window's first event hour up to the first known hour;
        later hours: from the last known hour up to the window's last event hour. -#}
    {%- set window_min = "(select min(event_hour) from " ~ raw_hours ~ " where "
        ~ in_window('event_hour') ~ ")" -%}
    {%- set window_max = "(select max(event_hour) from " ~ raw_hours ~ " where "
        ~ in_window('event_hour') ~ ")" -%}
    {%- set known_min = "(select min(datetime_hour) from " ~ this ~ ")" -%}
    {%- set known_max = "(select max(datetime_hour) from " ~ this ~ ")" -%}
    select hour_ts from (
        {{ hour_spine(window_min, dbt.dateadd('hour', -1, known_min)) }}
    ) as earlier
    union all
    select hour_ts from (
        {{ hour_spine(dbt.dateadd('hour', 1, known_max), window_max) }}
    ) as later
    {% else %}
    {{ hour_spine(
        "(select min(event_hour) from " ~ raw_hours ~ ")",
        "(select max(event_hour) from " ~ raw_hours ~ ")"
    ) }}
    {% endif %}
)

select
    {{ datetime_key('hour_ts') }} as datetime_key,
    hour_ts as datetime_hour,
    cast(hour_ts as date) as date,
    cast({{ date_part('year', 'hour_ts') }} as {{ dbt.type_int() }}) as year,
    cast({{ date_part('month', 'hour_ts') }} as {{ dbt.type_int() }}) as month,
    cast({{ date_part('day', 'hour_ts') }} as {{ dbt.type_int() }}) as day,
    cast({{ date_part('hour', 'hour_ts') }} as {{ dbt.type_int() }}) as hour,
    {{ iso_day_of_week('hour_ts') }} as day_of_week,
    {{ iso_day_of_week('hour_ts') }} in (6, 7) as is_weekend
from spine
