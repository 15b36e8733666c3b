{#- Identified users now, by gender and current level. -#}
select
    gender,
    level,
    count(*) as users
from {{ ref('dim_users') }}
where is_current
group by gender, level
