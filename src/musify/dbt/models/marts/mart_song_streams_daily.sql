{#- Streams per day, state and song, complete (not cut to a top N), so that the top
    songs of any date range and state are exact sums. Incremental: the days the load
    window touches are rebuilt whole from fact_streams. -#}
{{ config(
    materialized='incremental',
    incremental_strategy=('merge' if target.type == 'bigquery' else 'append'),
    pre_hook="{{ mart_delete_days() }}",
    partition_by=(
        {'field': 'date', 'data_type': 'date', 'granularity': 'day'}
        if target.type == 'bigquery' else none
    ),
) }}

with daily as (
    select
        cast(streams.event_hour as date) as date,
        locations.state_code,
        streams.song_key,
        count(*) as streams
    from {{ ref('fact_streams') }} as streams
    left join {{ ref('dim_location') }} as locations
        on locations.location_key = streams.location_key
    where {{ mart_days_window('streams.event_hour') }}
    group by cast(streams.event_hour as date), locations.state_code, streams.song_key
)

select
    daily.date,
    daily.state_code,
    daily.song_key,
    songs.title as song,
    songs.artist,
    cast(daily.streams as {{ dbt.type_int() }}) as streams
from daily
left join {{ ref('dim_songs') }} as songs on songs.song_key = daily.song_key
