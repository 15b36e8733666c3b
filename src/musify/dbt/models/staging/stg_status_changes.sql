{{ config(
    materialized='incremental',
    incremental_strategy=append_strategy(),
    pre_hook="{{ delete_window('event_hour') }}",
    partition_by=day_partition('event_hour'),
) }}
{{ stage_events('status_change_events', [
    clean_string('page') ~ ' as page',
    clean_string('auth') ~ ' as auth',
    'lower(' ~ clean_string('level') ~ ') as level',
]) }}
