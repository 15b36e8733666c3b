{#- One row per upgrade, downgrade or cancellation. user_key is the dim_users row
    valid at ts, which for an upgrade or downgrade is the period the change starts. -#}
{{ config(
    materialized='incremental',
    incremental_strategy=append_strategy(),
    pre_hook="{{ delete_window('event_hour') }}",
    post_hook="{{ repoint_user_keys('ts', 'event_hour') }}",
    partition_by=day_partition('event_hour'),
) }}
-- depends_on: {{ ref('int_dim_users_changes') }}

select
    changes.event_id as status_change_id,
    changes.session_id,
    changes.item_in_session,
    changes.ts,
    changes.event_hour,
    {{ datetime_key('changes.event_hour') }} as datetime_key,
    users.user_key,
    changes.user_id,
    changes.location_key,
    case changes.page
        when 'Submit Upgrade' then 'upgrade'
        when 'Submit Downgrade' then 'downgrade'
        when 'Cancel' then 'cancel'
    end as change_type,
    changes.level as level_before,
    case changes.page
        when 'Submit Upgrade' then 'paid'
        when 'Submit Downgrade' then 'free'
        else changes.level
    end as level_after
from {{ ref('stg_status_changes') }} as changes
left join {{ ref('dim_users') }} as users
    on users.user_id = changes.user_id
    and changes.ts >= users.valid_from
    and changes.ts < users.valid_to
where {{ incremental_window('changes.event_hour') }}
