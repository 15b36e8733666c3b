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

{#- The body of a daily top-N mart: the window's days of a complete per-day, per-state
    streams mart, ranked per day and state (ties share a rank), cut at n. `columns` are
    the key and labels carried over from the streams mart. -#}
{% macro top_daily(streams_mart, columns, n=100) -%}
with ranked as (
    select
        daily.date,
        daily.state_code,
        {% for c in columns %}daily.{{ c }},
        {% endfor %}daily.streams,
        rank() over (partition by daily.date, daily.state_code order by daily.streams desc)
            as streams_rank
    from {{ ref(streams_mart) }} as daily
    where {{ mart_days_window('cast(daily.date as ' ~ dbt.type_timestamp() ~ ')') }}
)

select
    date,
    state_code as state,
    {% for c in columns %}{{ c }},
    {% endfor %}streams,
    streams_rank as rank
from ranked
where streams_rank <= {{ n }}
{%- endmacro %}
