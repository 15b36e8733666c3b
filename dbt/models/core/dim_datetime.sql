{#- One row per hour from the first to the last event hour in raw (no fixed end). -#}
{{ config(materialized='table') }}

with spine as (
    {{ hour_spine(
        "(select min(event_hour) from " ~ source('raw', 'page_view_events') ~ ")",
        "(select max(event_hour) from " ~ source('raw', 'page_view_events') ~ ")"
    ) }}
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
