{#- A deterministic surrogate key over the columns' values, nulls made explicit (like
    dbt_utils.generate_surrogate_key, which we cannot install here): a pure function
    of the values, so the same member gets the same key in every run, full or
    incremental. The encoding is the engine's cheapest stable one (key_type()):
    BigQuery: md5 as 32 hex characters; DuckDB: the md5's upper 64 bits as a UBIGINT,
    half the bytes of the hex text with integer joins and compares (DuckDB's own
    hash() would be cheaper still, but its values change between DuckDB releases). -#}
{% macro surrogate_key(columns) -%}
  {{ return(adapter.dispatch('surrogate_key', 'musify')(columns)) }}
{%- endmacro %}

{% macro musify_key_text(columns) -%}
  {%- set parts = [] -%}
  {%- for c in columns -%}
    {%- do parts.append("coalesce(cast(" ~ c ~ " as " ~ dbt.type_string() ~ "), '_null_')") -%}
    {%- if not loop.last -%}{%- do parts.append("'|'") -%}{%- endif -%}
  {%- endfor -%}
  {{ dbt.concat(parts) }}
{%- endmacro %}

{% macro default__surrogate_key(columns) -%}
  {{ dbt.hash(musify_key_text(columns)) }}
{%- endmacro %}

{% macro duckdb__surrogate_key(columns) -%}
  md5_number_upper({{ musify_key_text(columns) }})
{%- endmacro %}

{#- The SQL type of surrogate_key() values (for typed nulls). -#}
{% macro key_type() -%}
  {{ return(adapter.dispatch('key_type', 'musify')()) }}
{%- endmacro %}

{% macro default__key_type() -%}{{ dbt.type_string() }}{%- endmacro %}

{% macro duckdb__key_type() -%}ubigint{%- endmacro %}

{#- The key of an event, from its Kafka-independent identity (session, item in session).
    BigQuery: surrogate_key(); DuckDB: the two numbers packed into one HUGEINT,
    session * 2^32 + (item + 2^31), exact for every BIGINT session and INT item (no
    collisions however many events accumulate) and far cheaper than a digest. -#}
{% macro event_key(session_id, item_in_session) -%}
  {{ return(adapter.dispatch('event_key', 'musify')(session_id, item_in_session)) }}
{%- endmacro %}

{% macro default__event_key(session_id, item_in_session) -%}
  {{ surrogate_key([session_id, item_in_session]) }}
{%- endmacro %}

{% macro duckdb__event_key(session_id, item_in_session) -%}
  (cast({{ session_id }} as hugeint) * 4294967296
    + (cast({{ item_in_session }} as bigint) + 2147483648))
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
