{#- A model's grain: no two rows share these columns' values (nulls count as one value,
    as group by treats them). -#}
{% test unique_combination(model, combination) %}
select {{ combination | join(', ') }}, count(*) as n
from {{ model }}
group by {{ combination | join(', ') }}
having count(*) > 1
{% endtest %}
