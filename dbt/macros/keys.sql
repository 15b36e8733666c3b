{#- A deterministic surrogate key: md5 over the columns' text, nulls made explicit
    (like dbt_utils.generate_surrogate_key, which we cannot install here). -#}
{% macro surrogate_key(columns) -%}
  {%- set parts = [] -%}
  {%- for c in columns -%}
    {%- do parts.append("coalesce(cast(" ~ c ~ " as " ~ dbt.type_string() ~ "), '_null_')") -%}
    {%- if not loop.last -%}{%- do parts.append("'|'") -%}{%- endif -%}
  {%- endfor -%}
  {{ dbt.hash(dbt.concat(parts)) }}
{%- endmacro %}

{#- The dim_datetime key of a timestamp: yyyymmddhh as an integer. -#}
{% macro datetime_key(ts) -%}
  cast(
    {{ date_part('year', ts) }} * 1000000
    + {{ date_part('month', ts) }} * 10000
    + {{ date_part('day', ts) }} * 100
    + {{ date_part('hour', ts) }}
  as {{ dbt.type_int() }})
{%- endmacro %}

{#- The SCD2 end of a current row. -#}
{% macro far_future() -%}
  cast('9999-12-31 00:00:00' as {{ dbt.type_timestamp() }})
{%- endmacro %}

{#- Trimmed text, '' as null. -#}
{% macro clean_string(column) -%}
  nullif(trim({{ column }}), '')
{%- endmacro %}
