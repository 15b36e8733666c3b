{#- Histograms of sessions per start day and state, in long form: metric 'minutes'
    (session length, whole minutes, floor) and metric 'songs' (songs played in the
    session), each with the number of sessions per bucket. Identified and anonymous
    sessions alike. Incremental by whole days of session start; the day before the
    window is rebuilt too, as a session that started then may have run into the window. -#}
{{ config(
    materialized='incremental',
    incremental_strategy=('merge' if target.type == 'bigquery' else 'append'),
    pre_hook="{{ mart_delete_days('date', 1) }}",
    partition_by=(
        {'field': 'date', 'data_type': 'date', 'granularity': 'day'}
        if target.type == 'bigquery' else none
    ),
) }}

with sessions as (
    select
        cast(sessions.session_start as date) as date,
        locations.state_code,
        cast(floor(sessions.duration_s / 60) as {{ dbt.type_int() }}) as minutes,
        sessions.songs
    from {{ ref('fact_sessions') }} as sessions
    left join {{ ref('dim_location') }} as locations
        on locations.location_key = sessions.location_key
    where {{ mart_days_window('sessions.session_start', 1) }}
)

select
    date,
    state_code,
    'minutes' as metric,
    minutes as bucket,
    cast(count(*) as {{ dbt.type_int() }}) as sessions
from sessions
group by date, state_code, minutes

union all

select
    date,
    state_code,
    'songs' as metric,
    songs as bucket,
    cast(count(*) as {{ dbt.type_int() }}) as sessions
from sessions
group by date, state_code, songs
