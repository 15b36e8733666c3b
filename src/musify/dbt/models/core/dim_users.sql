{#- SCD type 2 on level: one row per user and level period, [valid_from, valid_to).

    Consecutive observations of a user's level with the same value form a period (see
    int_user_level_runs for what observes a level); valid_from is the period's first
    observation (the first period starts at registration when that is earlier),
    valid_to the next period's valid_from, far future for the one current row, so
    ranges are gap-free and half-open; first_seen is the period's first observation. Names, gender and registration are type 1: the
    user's latest values on every row.

    Incremental: the rows of the users seen in the load window are replaced by their
    complete new set from int_dim_users_changes (pre-hook delete, then insert), with
    keys that late data does not change. On BigQuery the delete and the insert are two
    statements: a reader between them misses those users for that moment. -#}
{{ config(
    materialized='incremental',
    incremental_strategy=append_strategy(),
    pre_hook="{{ delete_changed_users() }}",
) }}

select
    user_key,
    user_id,
    first_name,
    last_name,
    gender,
    registration,
    level,
    period_no,
    valid_from,
    valid_to,
    is_current,
    first_seen
from {{ ref('int_dim_users_changes') }}
