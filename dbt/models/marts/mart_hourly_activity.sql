{#- Streams and distinct identified listeners per hour and state. -#}
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
group by streams.event_hour, streams.datetime_key, locations.state_code, locations.state_name
