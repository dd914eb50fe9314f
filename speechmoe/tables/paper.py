"""The paper's side of the tables: its systems, row and column names, published numbers,
table layout and the orderings it claims.

:data:`SYSTEMS` is the one list of the paper's seven systems: ``local/tables.py`` takes its
``--systems`` default from here and the recipes' ``run_tables.sh`` pass ``--systems`` only to
run fewer.
"""

from __future__ import annotations

from typing import Any

SYSTEMS: tuple[str, ...] = ("b1", "b2", "moe_l1", "moe_emb", "moe_4e", "moe_2e", "moe_8e")

#: Our system name -> the paper's row name.
PAPER_NAMES: dict[str, str] = {
    "b1": "B1",
    "b2": "B2",
    "moe_l1": "MoE-L1",
    "moe_emb": "+emb",
    "moe_4e": "+imp loss / MoE-4e",
    "moe_2e": "MoE-2e",
    "moe_8e": "MoE-8e",
}

#: The paper's four test-set columns.
PAPER_COLUMNS: tuple[str, ...] = ("Read", "Chat", "Spon", "AISHELL")

#: Our test set -> the paper's column (an AISHELL-2 recipe passes e.g. {"test_ios": "AISHELL"}).
DEFAULT_SET_NAMES: dict[str, str] = {"test_read": "Read", "test_chat": "Chat", "test_spon": "Spon"}

#: Tables 1-3 of the paper: params, FLOPs of a 1 s input, CER (%) per test-set column.
PAPER_RESULTS: dict[str, dict[str, Any]] = {
    "b1": {"params": 71e6, "flops": 2.3e9,
           "cer": {"Read": 2.0, "Chat": 22.92, "Spon": 24.95, "AISHELL": 4.52}},
    "b2": {"params": 134e6, "flops": 2.3e9,
           "cer": {"Read": 1.81, "Chat": 22.49, "Spon": 24.90, "AISHELL": 4.50}},
    "moe_l1": {"params": 134e6, "flops": 2.3e9,
               "cer": {"Read": 1.69, "Chat": 22.47, "Spon": 24.70, "AISHELL": 4.25}},
    "moe_emb": {"params": 170e6, "flops": 2.3e9,
                "cer": {"Read": 1.63, "Chat": 22.15, "Spon": 24.15, "AISHELL": 4.16}},
    "moe_4e": {"params": 170e6, "flops": 2.3e9,
               "cer": {"Read": 1.58, "Chat": 21.57, "Spon": 23.31, "AISHELL": 4.00}},
    "moe_2e": {"params": 105e6, "flops": 2.3e9,
               "cer": {"Read": 1.62, "Chat": 21.82, "Spon": 23.52, "AISHELL": 4.08}},
    "moe_8e": {"params": 297e6, "flops": 2.3e9,
               "cer": {"Read": 1.54, "Chat": 21.31, "Spon": 22.97, "AISHELL": 3.98}},
}

#: The relative changes the paper prints itself (Table 3, MoE-8e against B1), in percent.
PAPER_PRINTED_REL_CHANGE: dict[str, dict[str, float]] = {
    "moe_8e": {"Read": -23.0, "Chat": -7.0, "Spon": -7.9, "AISHELL": -11.9},
}

#: The tables as the paper groups them; ``names`` overrides the row name inside that table.
TABLE_SPECS: dict[str, dict[str, Any]] = {
    "table1": {"title": "Table 1: adding the sparsity L1 loss",
               "systems": ("b1", "b2", "moe_l1"), "refs": ("b1", "b2"), "names": {}},
    "table2": {"title": "Table 2: shared embedding network and mean importance loss",
               "systems": ("moe_l1", "moe_emb", "moe_4e"), "refs": ("b1",),
               "names": {"moe_4e": "+imp loss"}},
    "table3": {"title": "Table 3: increasing the number of experts",
               "systems": ("b1", "moe_2e", "moe_4e", "moe_8e"), "refs": ("b1",),
               "names": {"moe_4e": "MoE-4e"}},
}

#: The paper's orderings: (better, worse) means "better has the lower CER".
CLAIMS: tuple[tuple[str, str], ...] = (
    ("b2", "b1"),
    ("moe_l1", "b2"),
    ("moe_emb", "moe_l1"),
    ("moe_4e", "moe_emb"),
    ("moe_8e", "moe_4e"),
    ("moe_4e", "moe_2e"),
    ("moe_2e", "b1"),
)

#: Figure 2's systems.
DEV_LOSS_SYSTEMS: tuple[str, ...] = ("b1", "moe_2e", "moe_4e", "moe_8e")

# Why a convention is used (speechmoe/losses.py defines both); the choice is made before
# any run and written here, never picked by which one favours a system.
NORMALIZATION_WHY = {
    "utterance": "The authors' own (their released toolkit, tencent-ailab/3m-asr: CTC summed "
                 "over each utterance and averaged over the batch, the MoE layers' auxiliary "
                 "losses summed over layers): the paper's alpha = beta = 0.1 and gamma = 0.01 "
                 "were set under it, so it is the faithful reading of eq. 12. Chosen before "
                 "any run.",
    "frame": "The toolkit's default (CTC per output frame, auxiliary losses averaged over "
             "layers), under which its recipes' learning rates were set; the auxiliary "
             "losses weigh more against CTC than in the authors' code.",
}


def paper_name(system: str, table: str | None = None) -> str:
    """The paper's row name for ``system`` (inside ``table`` where it differs), else the name."""
    if table is not None:
        names = TABLE_SPECS.get(table, {}).get("names", {})
        if system in names:
            return names[system]
    return PAPER_NAMES.get(system, system)


def paper_cer(system: str, column: str | None) -> float | None:
    """The paper's CER of ``system`` in ``column``; None without a column or a number."""
    if column is None:
        return None
    return PAPER_RESULTS.get(system, {}).get("cer", {}).get(column)


def paper_relative_change(system: str, ref: str, column: str | None) -> float | None:
    """(CER_S - CER_ref) / CER_ref from the paper's numbers (a fraction), None without them."""
    a = paper_cer(system, column)
    b = paper_cer(ref, column)
    if a is None or b is None:
        return None
    return (a - b) / b
