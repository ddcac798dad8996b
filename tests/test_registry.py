"""The solver registry: one declaration per solver, capabilities that refuse a case with
one line naming the key, the parameter schema derived from dataclasses, and the
case-file reference that cannot drift from the schema."""

import logging
from pathlib import Path

import pytest

from wgf.cases import load_case, shipped_cases
from wgf.cases.errors import UserError
from wgf.cases.reference import REGENERATE, render
from wgf.cases.schema import SCHEMA, Key, Table
from wgf.solvers import SOLVERS, get_solver, solver_tables
from wgf.solvers.protocols import Capabilities, GradientFlowSolver, TransportSolver, case_kind

ROOT = Path(__file__).resolve().parents[1]


def _case(name: str, *sets: str):
    return load_case(name, list(sets), solver_tables())


def test_parameter_keys_come_from_the_dataclasses():
    tables = solver_tables()
    assert list(tables) == list(SOLVERS)
    inner = tables["fem-jko"]["inner"]
    assert (inner.kind, inner.default, inner.choices) == ("str", "newton", ("newton", "alg2"))
    particles = tables["blob"]["particles"]  # int | None: an integer key, unset by default
    assert (particles.kind, particles.default) == ("int", None)
    assert tables["fem-bb"]["adapt_r"] == Key(
        "bool", False, help="balance the primal and dual residuals by doubling/halving r"
    )
    assert tables["fem-bb"]["tol"].kind == "float" and tables["fem-bb"]["tol"].default == 1e-4
    for name, keys in tables.items():
        assert keys, name
        assert all(key.help for key in keys.values()), name


@pytest.mark.parametrize(
    ("solver", "case", "sets", "message"),
    [
        (
            "langevin",
            "porous_medium_1d",
            [],
            'case key \'energy.internal\': langevin needs "entropy" or "none" (got "power")',
        ),
        ("fem-jko", "heat_1d", ["energy.internal=none", "exact.kind=none"], "fem-jko needs"),
        ("quantile-1d", "heat_2d", [], "case key 'domain': quantile-1d supports 1-D only"),
        (
            "blob",
            "heat_2d",
            ["domain.shape=disk", "domain.center=[0.0, 0.0]", "domain.radius=2.0", "domain.h=0.5"],
            'needs "box", "circle" or "sphere" (got "disk")',
        ),
        ("fem-jko", "heat_1d", ["domain.cell_type=hypercube"], "'domain.cell_type'"),
        ("fem-implicit", "ot_shapes_1d", [], "fem-implicit is a gradient-flow solver"),
        ("fem-bb", "heat_1d", [], "fem-bb is a transport solver and needs a [target]"),
        ("fem-bb", "heat_1d", [], "case 'heat_1d' is a gradient-flow case"),
    ],
)
def test_capabilities_refuse_with_one_line_naming_the_key(solver, case, sets, message):
    info = get_solver(solver)
    with pytest.raises(UserError) as err:
        info.capabilities.check(_case(case, *sets), solver)
    text = str(err.value)
    assert message in text and "\n" not in text and text.startswith("case key '")
    # The solver's own check_case starts from the same check.
    with pytest.raises(UserError, match=r"^case key"):
        info.check(_case(case, *sets))


@pytest.mark.parametrize("path", shipped_cases(), ids=lambda p: p.stem)
def test_kinds_partition_the_shipped_cases(path):
    case = _case(str(path))
    for info in SOLVERS.values():
        fits = info.kind == case_kind(case)
        if fits:
            info.capabilities.check_kind(case, info.name)
        else:
            with pytest.raises(UserError, match="case key 'target'"):
                info.capabilities.check_kind(case, info.name)
    runnable = [info.name for info in SOLVERS.values() if _runs(info, case)]
    assert runnable, "every shipped case has a solver"
    assert ("fem-bb" in runnable) == (case_kind(case) == "transport")


def _runs(info, case) -> bool:
    try:
        info.capabilities.check(case, info.name)
    except UserError:
        return False
    return True


def test_reasons_are_appended_and_capabilities_describe_themselves():
    caps = Capabilities(dims=(1,), reasons={"dims": "quantiles are 1-D"})
    with pytest.raises(UserError, match=r"supports 1-D only \(the case is 2-D\): quantiles"):
        caps.check(_case("heat_2d"), "q")
    assert Capabilities().describe() == (
        "gradient flow; U: entropy, power, none; V: yes; W: no; 1/2/3-D; "
        "domain box/disk/file; cells simplex/hypercube"
    )
    assert get_solver("fem-bb").capabilities.describe().startswith("transport")
    assert get_solver("fem-bb").capabilities.needs_target
    assert not get_solver("blob").capabilities.needs_target


def test_solver_classes_have_the_methods_of_their_protocol():
    for info in SOLVERS.values():
        protocol = GradientFlowSolver if info.kind == "flow" else TransportSolver
        cls = info.load()
        methods = [
            n
            for n, v in vars(protocol).items()
            if (callable(v) or isinstance(v, classmethod)) and not n.startswith("_")
        ]
        assert "check_case" in methods and len(methods) >= 7
        missing = [n for n in methods if not callable(getattr(cls, n, None))]
        assert not missing, (info.name, missing)


def _schema_keys(schema: dict, path: str = "") -> list[str]:
    out = []
    for name, spec in schema.items():
        if isinstance(spec, Table):
            out += _schema_keys(spec.keys, f"{path}{name}.")
        else:
            out.append(f"{path}{name}")
    return out


def test_reference_lists_every_key():
    text = render(solver_tables())
    for dotted in _schema_keys(SCHEMA):
        table, _, key = dotted.rpartition(".")
        assert f"| `{key}` |" in text, dotted
        if table:
            assert f"## `[{table}]`" in text, table
    for solver, keys in solver_tables().items():
        section = text.split(f"### `[solver.{solver}]`")[1].split("###")[0]
        for key, spec in keys.items():
            assert f"| `{key}` |" in section and spec.help.replace("|", "\\|") in section


def test_committed_case_format_is_up_to_date():
    committed = (ROOT / "docs" / "case-format.md").read_text()
    assert committed == render(solver_tables()), (
        f"docs/case-format.md is stale: regenerate it with `{REGENERATE}`"
    )


def test_cli_logging_rank0_info_other_ranks_warnings(capsys):
    from wgf.cli import configure_logging

    logger = logging.getLogger("wgf")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    try:
        note = logging.getLogger("wgf.solvers.fem.jko")
        configure_logging(0)
        configure_logging(0)  # once only: no doubled lines
        note.info("[fem-jko] a note %d", 1)
        note.debug("not shown")
        assert capsys.readouterr().out == "[fem-jko] a note 1\n"
        configure_logging(1)
        note.info("a note on rank 1")
        note.warning("a warning on rank 1")
        assert capsys.readouterr().out == "a warning on rank 1\n"
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers[:] = saved[2]
