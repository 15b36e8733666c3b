{#- One row per song played (deduplicated listen event). Incremental by event hour:
    the window's hours are deleted, then re-inserted from staging. -#}
{{ config(
    materialized='incremental',
    incremental_strategy=append_strategy(),
    pre_hook="{{ delete_window('event_hour') }}",
    post_hook="{{ repoint_user_keys('ts', 'event_hour') }}",
    partition_by=day_partition('event_hour'),
) }}
-- depends_on: {{ ref('int_dim_users_changes') }}

select
    listens.event_id as stream_id,
    listens.session_id,
    listens.item_in_session,
    listens.ts,
    listens.event_hour,
    {{ datetime_key('listens.event_hour') }} as datetime_key,
    users.user_key,
    listens.user_id,
    listens.song_key,
    listens.artist_key,
    listens.location_key,
    listens.level,
    listens.auth,
    listens.duration
from {{ ref('stg_listen_events') }} as listens
left join {{ ref('dim_users') }} as users
    on users.user_id = listens.user_id
    and listens.ts >= users.valid_from
    and listens.ts < users.valid_to
where {{ incremental_window('listens.event_hour') }}
