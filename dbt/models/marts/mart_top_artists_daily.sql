{#- Each day's 100 most played artists per state (ties share a rank). Incremental:
    the days the load window touches are ranked again from all their streams. -#}
{{ config(
    materialized='incremental',
    incremental_strategy=append_strategy(),
    pre_hook="{{ mart_delete_days() }}",
    partition_by=day_partition('date', 'date'),
) }}

with daily as (
    select
        cast(streams.event_hour as date) as date,
        locations.state_code,
        streams.artist_key,
        count(*) as streams
    from {{ ref('fact_streams') }} as streams
    left join {{ ref('dim_location') }} as locations
        on locations.location_key = streams.location_key
    where {{ mart_days_window('streams.event_hour') }}
    group by cast(streams.event_hour as date), locations.state_code, streams.artist_key
),

ranked as (
    select
        daily.*,
        rank() over (partition by date, state_code order by streams desc) as artist_rank
    from daily
)

select
    ranked.date,
    ranked.state_code as state,
    ranked.artist_key,
    artists.artist,
    ranked.streams,
    ranked.artist_rank as rank
from ranked
left join {{ ref('dim_artists') }} as artists on artists.artist_key = ranked.artist_key
where ranked.artist_rank <= 100
