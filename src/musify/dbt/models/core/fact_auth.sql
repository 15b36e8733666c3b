{#- One row per login attempt (auth event); user_id and user_key only on success. -#}
{{ config(
    materialized='incremental',
    incremental_strategy=append_strategy(),
    pre_hook="{{ delete_window('event_hour') }}",
    post_hook="{{ repoint_user_keys('ts', 'event_hour') }}",
    partition_by=day_partition('event_hour'),
) }}
-- depends_on: {{ ref('int_dim_users_changes') }}

select
    logins.event_id as auth_id,
    logins.session_id,
    logins.item_in_session,
    logins.ts,
    logins.event_hour,
    {{ datetime_key('logins.event_hour') }} as datetime_key,
    users.user_key,
    logins.user_id,
    logins.location_key,
    logins.level,
    logins.success
from {{ ref('stg_auth_events') }} as logins
left join {{ ref('dim_users') }} as users
    on users.user_id = logins.user_id
    and logins.ts >= users.valid_from
    and logins.ts < users.valid_to
where {{ incremental_window('logins.event_hour') }}
