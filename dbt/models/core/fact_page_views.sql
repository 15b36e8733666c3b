{#- One row per page view (every event). Incremental by event hour like fact_streams. -#}
{{ config(
    materialized='incremental',
    unique_key='page_view_id',
    pre_hook="{{ delete_window('event_hour') }}",
    partition_by=(
        {'field': 'event_hour', 'data_type': 'timestamp', 'granularity': 'day'}
        if target.type == 'bigquery' else none
    ),
) }}

select
    views.event_id as page_view_id,
    views.session_id,
    views.item_in_session,
    views.ts,
    views.event_hour,
    {{ datetime_key('views.event_hour') }} as datetime_key,
    users.user_key,
    views.user_id,
    {{ surrogate_key(['views.city', 'views.state_code', 'views.zip',
                      'views.lat', 'views.lon']) }} as location_key,
    case when views.page = 'NextSong'
        then {{ surrogate_key(['views.artist', 'views.song', 'views.duration']) }}
    end as song_key,
    views.page,
    views.auth,
    views.method,
    views.status,
    views.level
from {{ ref('stg_page_views') }} as views
left join {{ ref('dim_users') }} as users
    on users.user_id = views.user_id
    and views.ts >= users.valid_from
    and views.ts < users.valid_to
where {{ incremental_window('views.event_hour') }}
