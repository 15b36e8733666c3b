{#- The load window [start, end): hour-aligned ISO timestamps. Vars `start` and `end`
    when given (--vars, e.g. by hand), else the environment (DBT_MUSIFY_WINDOW_START and
    _END: how `musify batch` passes them), else all time, so a plain `dbt build` brings
    every model up to date. Why the environment: dbt re-parses the whole project
    whenever --vars change, i.e. on every hourly run, while an env var read only while
    executing (never while parsing) leaves partial parsing intact. -#}
{% macro window_bound(name, fallback) -%}
  {%- set value = var(name, none) -%}
  {%- if value is none and execute -%}
    {%- set value = env_var('DBT_MUSIFY_WINDOW_' ~ (name | upper), '') -%}
  {%- endif -%}
  {{ return(value or fallback) }}
{%- endmacro %}

{% macro window_start_value() -%}
  {{ return(window_bound('start', '1970-01-01T00:00:00')) }}
{%- endmacro %}

{% macro window_end_value() -%}
  {{ return(window_bound('end', '9999-12-31T00:00:00')) }}
{%- endmacro %}

{% macro musify_ts_literal(value) -%}
  {%- set v = (value | string).replace('Z', '').replace('+00:00', '') -%}
  cast('{{ v }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro window_start() -%}{{ musify_ts_literal(window_start_value()) }}{%- endmacro %}
{% macro window_end() -%}{{ musify_ts_literal(window_end_value()) }}{%- endmacro %}

{#- A predicate on an hour column: true inside the window. -#}
{% macro in_window(column) -%}
  ({{ column }} >= {{ window_start() }} and {{ column }} < {{ window_end() }})
{%- endmacro %}

{#- In an incremental run only the window's hours; on a first build or full refresh, all. -#}
{% macro incremental_window(column) -%}
  {%- if is_incremental() -%}{{ in_window(column) }}{%- else -%}1 = 1{%- endif -%}
{%- endmacro %}

{#- Pre-hook of the hourly facts: remove the window's rows before they are re-inserted,
    so rows that vanished from a reloaded hour vanish here too. -#}
{% macro delete_window(column='event_hour') -%}
  {%- if is_incremental() -%}
    delete from {{ this }} where {{ in_window(column) }}
  {%- else -%}
    select 1
  {%- endif -%}
{%- endmacro %}

{#- The strategy of window-replaced models (delete the window in a pre-hook, then
    insert the window's rows): a plain append on DuckDB; on BigQuery a merge without
    unique_key, which dbt-bigquery runs as an insert. No key lookup into the target,
    so the cost does not grow with the table. -#}
{% macro append_strategy() -%}
  {{ return('merge' if target.type == 'bigquery' else 'append') }}
{%- endmacro %}

{#- BigQuery partitioning of a table by the day of a timestamp or date column (none
    elsewhere): window deletes and inserts touch only the window's partitions. -#}
{% macro day_partition(field, data_type='timestamp') -%}
  {%- if target.type == 'bigquery' -%}
    {{ return({'field': field, 'data_type': data_type, 'granularity': 'day'}) }}
  {%- else -%}
    {{ return(none) }}
  {%- endif -%}
{%- endmacro %}

{#- A var's ISO timestamp as a naive UTC datetime, for arithmetic at compile time. -#}
{% macro musify_parse_ts(value) -%}
  {%- set text = (value | string).replace('T', ' ').replace('Z', '').replace('+00:00', '') -%}
  {{ return(modules.datetime.datetime.strptime(text[:19], '%Y-%m-%d %H:%M:%S')) }}
{%- endmacro %}

{#- A timestamp run_query returned (naive UTC on DuckDB, aware on BigQuery), truncated to
    its hour, as a naive UTC datetime. -#}
{% macro musify_naive_hour(value) -%}
  {%- set text = value.strftime('%Y-%m-%d %H') ~ ':00:00' -%}
  {{ return(modules.datetime.datetime.strptime(text, '%Y-%m-%d %H:%M:%S')) }}
{%- endmacro %}

{#- Post-hook of the facts that carry user_key: rows after the window whose user's
    periods this run rewrote (a re-run of an old hour with newer hours loaded) point
    again to the dim_users row valid at their time. Rows before the window keep valid
    keys by construction (see int_dim_users_changes), rows in it were just inserted;
    in an hourly run nothing lies after the window, and the filter on the partition
    column keeps this cheap. -#}
{% macro repoint_user_keys(ts_column='ts', hour_column='event_hour') -%}
  {%- if is_incremental() -%}
    update {{ this }} as f
    set user_key = u.user_key
    from {{ ref('dim_users') }} as u
    where f.{{ hour_column }} >= {{ window_end() }}
      and f.user_id in (select user_id from {{ ref('int_dim_users_changes') }})
      and u.user_id = f.user_id
      and f.{{ ts_column }} >= u.valid_from
      and f.{{ ts_column }} < u.valid_to
      and (f.user_key is null or f.user_key <> u.user_key)
  {%- else -%}
    select 1
  {%- endif -%}
{%- endmacro %}

{#- Generic tests on large models take `where: "__window__"` (or "__window__:column")
    to check only the load window's rows (every row on a full build), so a test's cost
    follows the hour, not the history; `"__window_days__:column"` for a date column
    checks the days the window touches. Other `where` values work as in dbt. -#}
{% macro get_where_subquery(relation) -%}
  {%- set where = config.get('where') -%}
  {%- if where -%}
    {%- if where.startswith('__window_days__') -%}
      {#- a date column: the days the window touches (BigQuery compares no DATE with a
          TIMESTAMP) -#}
      {%- set column = where.split(':')[1] -%}
      {%- set where -%}
        ({{ column }} >= cast({{ window_start() }} as date)
          and {{ column }} <= cast({{ window_end() }} as date))
      {%- endset -%}
    {%- elif where.startswith('__window__') -%}
      {%- set column = where.split(':')[1] if ':' in where else 'event_hour' -%}
      {%- set where = in_window(column) -%}
    {%- endif -%}
    {%- set filtered -%}
      (select * from {{ relation }} where {{ where }}) dbt_subquery
    {%- endset -%}
    {%- do return(filtered) -%}
  {%- else -%}
    {%- do return(relation) -%}
  {%- endif -%}
{%- endmacro %}

{#- Pre-hook of dim_users: drop the rows of the users int_dim_users_changes rewrites. -#}
{% macro delete_changed_users() -%}
  {%- if is_incremental() -%}
    delete from {{ this }}
    where user_id in (select user_id from {{ ref('int_dim_users_changes') }})
  {%- else -%}
    select 1
  {%- endif -%}
{%- endmacro %}
