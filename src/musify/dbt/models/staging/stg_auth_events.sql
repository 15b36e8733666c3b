{{ config(
    materialized='incremental',
    incremental_strategy=append_strategy(),
    pre_hook="{{ delete_window('event_hour') }}",
    partition_by=day_partition('event_hour'),
) }}
{{ stage_events('auth_events', [
    'lower(' ~ clean_string('level') ~ ') as level',
    'cast(success as ' ~ dbt.type_boolean() ~ ') as success',
]) }}
