{#- Streams and distinct identified listeners per hour and state. Incremental: the
    window's hours are replaced, like the facts. -#}
{{ config(
    materialized='incremental',
    incremental_strategy=append_strategy(),
    pre_hook="{{ delete_window('hour') }}",
    partition_by=day_partition('hour'),
) }}

select
    streams.event_hour as hour,
    streams.datetime_key,
    locations.state_code,
    locations.state_name,
    count(*) as streams,
    count(distinct streams.user_id) as active_users
from {{ ref('fact_streams') }} as streams
left join {{ ref('dim_location') }} as locations
    on locations.location_key = streams.location_key
where {{ incremental_window('streams.event_hour') }}
group by streams.event_hour, streams.datetime_key, locations.state_code, locations.state_name
