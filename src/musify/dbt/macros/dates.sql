{#- ISO day of week, 1 = Monday ... 7 = Sunday. -#}
{% macro iso_day_of_week(ts) -%}
  {{ return(adapter.dispatch('iso_day_of_week', 'musify')(ts)) }}
{%- endmacro %}

{% macro default__iso_day_of_week(ts) -%}
  cast(extract(isodow from {{ ts }}) as {{ dbt.type_int() }})
{%- endmacro %}

{% macro bigquery__iso_day_of_week(ts) -%}
  {#- BigQuery: DAYOFWEEK is 1 = Sunday ... 7 = Saturday -#}
  cast(mod(extract(dayofweek from {{ ts }}) + 5, 7) + 1 as int64)
{%- endmacro %}

{#- One row per hour from start_ts to end_ts inclusive, as column `hour_ts`.
    Both arguments are SQL expressions (scalar subqueries are fine). -#}
{% macro hour_spine(start_ts, end_ts) -%}
  {{ return(adapter.dispatch('hour_spine', 'musify')(start_ts, end_ts)) }}
{%- endmacro %}

{% macro default__hour_spine(start_ts, end_ts) -%}
  {#- Portable: digits cross-joined up to a million hours (114 years). -#}
  with digits as (
    {% for d in range(10) %}select {{ d }} as d{% if not loop.last %} union all {% endif %}{% endfor %}
  ),
  numbers as (
    select d0.d + 10 * d1.d + 100 * d2.d + 1000 * d3.d + 10000 * d4.d + 100000 * d5.d as n
    from digits d0 cross join digits d1 cross join digits d2
      cross join digits d3 cross join digits d4 cross join digits d5
  ),
  bounds as (
    select {{ start_ts }} as lo, {{ end_ts }} as hi
  )
  select {{ dbt.dateadd('hour', 'numbers.n', 'bounds.lo') }} as hour_ts
  from numbers cross join bounds
  where numbers.n <= {{ dbt.datediff('bounds.lo', 'bounds.hi', 'hour') }}
{%- endmacro %}

{% macro duckdb__hour_spine(start_ts, end_ts) -%}
  select cast(unnest(generate_series(lo, hi, interval 1 hour)) as timestamp) as hour_ts
  from (select {{ start_ts }} as lo, {{ end_ts }} as hi) as bounds
  where lo is not null and hi is not null
{%- endmacro %}

{% macro bigquery__hour_spine(start_ts, end_ts) -%}
  select hour_ts
  from (select {{ start_ts }} as lo, {{ end_ts }} as hi) as bounds,
    unnest(generate_timestamp_array(bounds.lo, bounds.hi, interval 1 hour)) as hour_ts
{%- endmacro %}

{#- A date part as an integer (extract works on DuckDB and BigQuery alike). -#}
{% macro date_part(part, ts) -%}
  cast(extract({{ part }} from {{ ts }}) as {{ dbt.type_int() }})
{%- endmacro %}
