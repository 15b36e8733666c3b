{#- Day-grain incremental marts (the dashboard's): an hourly load window [start, end)
    touches whole days, and those days are rebuilt entirely from the facts, so a daily
    total is always complete. `days_before` widens the window into earlier days, for
    rows keyed by a day other than the event's (a session that started the day before). -#}

{#- Midnight of the window's first day (minus days_before days). -#}
{% macro mart_days_start(days_before=0) -%}
  {%- if days_before -%}
    {{ dbt.date_trunc('day', dbt.dateadd('day', -days_before, window_start())) }}
  {%- else -%}
    {{ dbt.date_trunc('day', window_start()) }}
  {%- endif -%}
{%- endmacro %}

{#- Midnight after the window's last hour: end is hour-aligned, so end + 23 h truncated
    to the day is end itself at midnight and the next midnight otherwise. -#}
{% macro mart_days_end() -%}
  {{ dbt.date_trunc('day', dbt.dateadd('hour', 23, window_end())) }}
{%- endmacro %}

{#- A predicate on a timestamp column: inside the window's days (always true on a
    first build or full refresh). -#}
{% macro mart_days_window(column, days_before=0) -%}
  {%- if is_incremental() -%}
    ({{ column }} >= {{ mart_days_start(days_before) }} and {{ column }} < {{ mart_days_end() }})
  {%- else -%}1 = 1{%- endif -%}
{%- endmacro %}

{#- Pre-hook: delete the window's days from a mart keyed by a date column. -#}
{% macro mart_delete_days(column='date', days_before=0) -%}
  {%- if is_incremental() -%}
    delete from {{ this }}
    where {{ column }} >= cast({{ mart_days_start(days_before) }} as date)
      and {{ column }} < cast({{ mart_days_end() }} as date)
  {%- else -%}
    select 1
  {%- endif -%}
{%- endmacro %}
