-- dim_users: exactly one current row per user, and each user's periods are gap-free
-- and non-overlapping: ordered by valid_from, every valid_to is the next valid_from,
-- and only the last (current) row ends in the far future. Returns offending rows.
with ordered as (
    select
        user_id,
        user_key,
        valid_from,
        valid_to,
        is_current,
        lead(valid_from) over (partition by user_id order by valid_from) as next_from
    from {{ ref('dim_users') }}
),

current_counts as (
    select user_id, sum(case when is_current then 1 else 0 end) as current_rows
    from {{ ref('dim_users') }}
    group by user_id
)

select user_id, 'not exactly one current row' as problem
from current_counts
where current_rows <> 1

union all

select user_id, 'gap or overlap' as problem
from ordered
where next_from is not null and valid_to <> next_from

union all

select user_id, 'empty or inverted range' as problem
from ordered
where valid_to <= valid_from

union all

select user_id, 'current row does not end in the far future' as problem
from ordered
where (next_from is null) <> (valid_to = {{ far_future() }})
