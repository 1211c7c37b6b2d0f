"""The SQL the load pipeline runs, built here and executed elsewhere: the stage, values
and keys, the merge statements, the full feed's statements, verify's.  Builders take the
Plan (the file bound to its target table) and nothing else; the only catalog text spliced
in is what describe() read from the target's own definition (type names, column defaults,
CHECK expressions), which is as trusted as the table itself.
"""

from csvload.load.statements.checks import (  # noqa: F401
    absent,
    verify_counts,
)
from csvload.load.statements.feed import (  # noqa: F401
    CREATE_KEPT,
    KEPT,
    copy_kept,
    count_in_scope,
    count_missing,
    inserted_changes,
    table_key,
)
from csvload.load.statements.merge import (  # noqa: F401
    COUNTS_ROW,
    EXISTING,
    GONE,
    HELD_COUNT,
    REACTIVATED,
    UNCHANGED,
    count_latest,
    create_counter,
    insert_latest,
    merge_counts,
    merge_statement,
    with_statement,
    written,
)
from csvload.load.statements.stage import (  # noqa: F401
    ANALYZE_STAGE,
    BAD,
    STAGE,
    copy_stage,
    create_stage,
    find_value,
    is_empty,
    lock,
    set_local,
    stage_column,
)
from csvload.load.statements.values import (  # noqa: F401
    DECIMAL_COMMA,
    citext_equal,
    comparable,
    compared_fields,
    in_scope,
    insert_lists,
    keeps_stored,
    key_alias,
    key_join,
    key_parts,
    key_text,
    latest,
    new_active,
    new_value,
    number_text,
    row_differs,
    stage_match,
    touch_value,
    type_of,
    update_assignments,
    updates_rows,
    value,
)
