{#- The load window: vars `start` and `end`, hour-aligned ISO timestamps, [start, end). -#}

{% macro musify_ts_literal(value) -%}
  {%- set v = (value | string).replace('Z', '').replace('+00:00', '') -%}
  cast('{{ v }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro window_start() -%}{{ musify_ts_literal(var('start')) }}{%- endmacro %}
{% macro window_end() -%}{{ musify_ts_literal(var('end')) }}{%- endmacro %}

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
