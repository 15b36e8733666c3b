{#- One row per song played (deduplicated listen event). Incremental by event hour:
    the window's hours are deleted, then re-inserted from staging. -#}
{{ config(
    materialized='incremental',
    unique_key='stream_id',
    pre_hook="{{ delete_window('event_hour') }}",
    partition_by=(
        {'field': 'event_hour', 'data_type': 'timestamp', 'granularity': 'day'}
        if target.type == 'bigquery' else none
    ),
) }}

select
    listens.event_id as stream_id,
    listens.session_id,
    listens.item_in_session,
    listens.ts,
    listens.event_hour,
    {{ datetime_key('listens.event_hour') }} as datetime_key,
    users.user_key,
    listens.user_id,
    {{ surrogate_key(['listens.artist', 'listens.song', 'listens.duration']) }} as song_key,
    {{ surrogate_key(['listens.artist']) }} as artist_key,
    {{ surrogate_key(['listens.city', 'listens.state_code', 'listens.zip',
                      'listens.lat', 'listens.lon']) }} as location_key,
    listens.level,
    listens.auth,
    listens.duration
from {{ ref('stg_listen_events') }} as listens
left join {{ ref('dim_users') }} as users
    on users.user_id = listens.user_id
    and listens.ts >= users.valid_from
    and listens.ts < users.valid_to
where {{ incremental_window('listens.event_hour') }}
