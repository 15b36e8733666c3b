{#- A device location as the events carry it: city, state, zip and coordinates. -#}
{{ config(materialized='incremental', unique_key='location_key') }}

with locations as (
    select distinct location_key, city, state_code, zip, lat, lon
    from {{ ref('stg_page_views') }}
    where {{ incremental_window('event_hour') }}
)

select
    locations.location_key,
    locations.city,
    locations.state_code,
    states.state_name,
    locations.zip,
    locations.lat,
    locations.lon
from locations
left join {{ ref('state_codes') }} as states on states.state_code = locations.state_code
