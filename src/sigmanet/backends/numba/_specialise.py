"""The specialised engine: the step's one interval loop, partially evaluated for one network.

Why: for the seed's 3 -> 4 -> 1 the loops' trip counts are 1 to 4, and loop
control, the pieces' calls and the options' branches cost more than the
arithmetic (measured: the general loop ran the seed at 0.6 us per iteration,
the old hand-unrolled kernel at 0.13). numba neither unrolls a loop nor
folds a run-time option away, and numba's own inlining of the whole loop took
18 s to compile. So this module takes the *source* of :func:`step.interval_loop`,
:func:`step.thread_chunks` and the pieces they call, and partially evaluates
it for one network: the layer sizes and offsets, the options (output layer,
loss, bias, weights, optimizer, shuffling, sparse input) and the engine's
shape (one thread, loops instead of BLAS) become constants; branches on them
are removed, the loops over layers unrolled, and the pieces' bodies inlined.
What comes out is one flat function, generated from the step's own code and
no second copy of it, which numba compiles in about a second and LLVM turns
into straight-line code.

The evaluator handles the Python that step.py is written in (assignments,
tuple unpacking, if/for/while over ranges, calls of the pieces as
statements); it refuses anything else loudly, so a change there that it
cannot follow fails in the tests, never silently.

The generated file lives in the cache folder so numba's on-disk cache (keyed
to the file) serves later processes; its name carries a digest of its source
(which follows step.py's), so a new sigmanet never reuses code compiled from an
old step. Where no folder is writable the source is compiled in memory each
process. The folder keeps the ``MAX_GENERATED`` most recently used modules.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import hashlib
import importlib.util
import inspect
import itertools
import os
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from . import step
from .strategy import cache_folder

# Generated modules kept in the cache folder (each with its numba cache, ~0.5 MB).
MAX_GENERATED = 64
# The pieces whose bodies are inlined (they are called as statements in the loop).
PIECES = (
    "gemm", "csr_forward", "csr_gradient", "activate", "output_delta", "hidden_delta", "bias_gradient", "update_span",
)  # fmt: skip
FLAGS = (
    "output",
    "loss",
    "derivative",
    "use_bias",
    "weighted",
    "optimizer",
    "track_all",
    "gathered",
    "sparse",
    "invscaling",
    "mean",
)
NUMBERS = tuple(n for n in step.OPTIONS if n not in FLAGS and n != "update")
LAYOUT = ("sizes", "woff", "boff", "aoff", "nW", "cr", "T", "ptr")
# Loops over constant ranges this long or shorter are unrolled.
MAX_UNROLL = 16
# Full-batch tables of at most this many rows get the row count compiled in (see render): one more
# compile per row count, so only where it pays most (the seed's 4 rows, XOR-sized tables).
ROWS_LIMIT = 16
# Functions of step.py that the generated code calls as they are (compiled helpers, not pieces to inline).
KEPT_CALLS = ("sigmoid_inplace",)


def offsets(sizes) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int]:
    """(woff, boff, aoff, weights): where each layer starts in the flat weights, biases and activations."""
    sizes = [int(n) for n in sizes]
    L = len(sizes) - 1
    woff, boff, aoff = [], [], []
    w = b = a = 0
    for k in range(L):
        woff.append(w)
        boff.append(b)
        w += sizes[k] * sizes[k + 1]
        b += sizes[k + 1]
    for n in sizes:
        aoff.append(a)
        a += n
    return tuple(woff), tuple(boff), tuple(aoff), w


# -- the partial evaluator ------------------------------------------------------------------------


class Unsupported(Exception):
    """The step's source uses Python the evaluator does not follow (a bug to fix here, found by the tests)."""


def _function(fn: Any) -> ast.FunctionDef:
    tree = ast.parse(textwrap.dedent(inspect.getsource(getattr(fn, "py_func", fn))))
    node = tree.body[0]
    if not isinstance(node, ast.FunctionDef):
        raise Unsupported(f"{fn} is not a plain function")
    node.decorator_list = []
    return node


def _evaluate(node: ast.expr) -> Any:
    """The value of an expression of constants."""
    expr = ast.Expression(body=node)
    ast.fix_missing_locations(expr)
    return eval(compile(expr, "<fold>", "eval"), {})


def _is_const(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant)


def _const(value: Any) -> ast.Constant:
    if isinstance(value, (tuple, list)):
        value = tuple(value)
    return ast.Constant(value=value)


_SAFE_CALLS = {"len": len, "min": min, "max": max, "abs": abs, "int": int, "float": float, "bool": bool}


class _Folder(ast.NodeTransformer):
    """Folds an expression under an environment of constants."""

    def __init__(self, env: dict[str, Any]):
        self.env = env

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if isinstance(node.ctx, ast.Load) and node.id in self.env:
            return _const(self.env[node.id])
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if _is_const(node.left) and _is_const(node.right):
            return _const(_evaluate(node))
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if _is_const(node.operand):
            return _const(_evaluate(node))
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if _is_const(node.left) and all(_is_const(c) for c in node.comparators):
            return _const(_evaluate(node))
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        kept = []
        for value in node.values:
            if _is_const(value):
                truth = bool(value.value)
                if isinstance(node.op, ast.And) and not truth:
                    return _const(False)
                if isinstance(node.op, ast.Or) and truth:
                    return _const(True)
                continue  # a neutral constant: True in `and`, False in `or`
            kept.append(value)
        if not kept:
            return _const(isinstance(node.op, ast.And))
        return kept[0] if len(kept) == 1 else ast.BoolOp(op=node.op, values=kept)

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        self.generic_visit(node)
        if _is_const(node.test):
            return node.body if node.test.value else node.orelse
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        self.generic_visit(node)
        # P.shape[0]: the parameters' count is known (P's name in the loop, or its inlined copies')
        if (
            isinstance(node.value, ast.Attribute)
            and node.value.attr == "shape"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id.split("_thread_chunks")[0] == "P"
            and _is_const(node.slice)
            and node.slice.value == 0
            and "nP" in self.env
        ):
            return _const(self.env["nP"])
        if _is_const(node.value) and _is_const(node.slice) and isinstance(node.value.value, tuple):
            return _const(node.value.value[node.slice.value])
        # X[a][b] -> X[a, b]: a row view per access would cost numba a view's construction each time
        if isinstance(node.value, ast.Subscript) and not isinstance(node.value.slice, (ast.Slice, ast.Tuple)):
            if not isinstance(node.slice, (ast.Slice, ast.Tuple)):
                return ast.Subscript(
                    value=node.value.value, slice=ast.Tuple(elts=[node.value.slice, node.slice], ctx=ast.Load()),
                    ctx=node.ctx,
                )  # fmt: skip
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id in _SAFE_CALLS and all(_is_const(a) for a in node.args):
            if not node.keywords:
                return _const(_SAFE_CALLS[node.func.id](*(a.value for a in node.args)))
        # np.int64(constant) -> the constant
        if (
            isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "np"
            and node.func.attr in ("int64", "int32", "uint64")
            and len(node.args) == 1
            and _is_const(node.args[0])
            and isinstance(node.args[0].value, int)
        ):
            return node.args[0]
        return node


def _fold(node: ast.AST, env: dict[str, Any]) -> ast.AST:
    return _Folder(env).visit(node)


def _assigned(nodes: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for stmt in nodes:
        for sub in ast.walk(stmt):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)
    return names


def _range_values(node: ast.AST) -> list[int] | None:
    """The values of ``range(...)``/``prange(...)`` with constant arguments, or None."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("range", "prange")):
        return None
    if node.keywords or not all(_is_const(a) and isinstance(a.value, int) for a in node.args):
        return None
    return list(range(*(a.value for a in node.args)))


class _Specialiser:
    """Inlines the pieces and folds the constants through one function's statements."""

    def __init__(self, pieces: dict[str, ast.FunctionDef], thread: ast.FunctionDef):
        self.pieces = pieces
        self.thread = thread
        self.counter = itertools.count()
        self.tuples: dict[str, ast.Tuple] = {}  # names bound to tuple displays (the loop's `flags`)
        self.unpacked: dict[str, list[str]] = {}  # tuples already unpacked into names (`data`, `state`)

    def block(self, stmts: list[ast.stmt], env: dict[str, Any]) -> tuple[list[ast.stmt], dict[str, Any]]:
        out: list[ast.stmt] = []
        for stmt in stmts:
            new, env = self.statement(stmt, env)
            out.extend(new)
        return out, env

    def statement(self, stmt: ast.stmt, env: dict[str, Any]) -> tuple[list[ast.stmt], dict[str, Any]]:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            return [], env  # a docstring
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and isinstance(stmt.value.func, ast.Name):
            name = stmt.value.func.id
            if name in self.pieces or name == "_thread":
                body = self.inline(self.pieces[name] if name in self.pieces else self.thread, stmt.value, env)
                return self.block(body, env)
            if name in KEPT_CALLS:  # a compiled helper, called as it is, on folded arguments
                return [ast.Expr(value=_fold(stmt.value, env))], env
        if isinstance(stmt, ast.Assign):
            return self.assign(stmt, env)
        if isinstance(stmt, ast.AugAssign):
            stmt = copy.copy(stmt)
            stmt.value = _fold(stmt.value, env)
            stmt.target = _fold(stmt.target, {}) if not isinstance(stmt.target, ast.Name) else stmt.target
            if isinstance(stmt.target, ast.Subscript):
                stmt.target = self._load_fold_subscript(stmt.target, env)
            env = {k: v for k, v in env.items() if not (isinstance(stmt.target, ast.Name) and k == stmt.target.id)}
            return [stmt], env
        if isinstance(stmt, ast.If):
            test = _fold(stmt.test, env)
            if _is_const(test):
                return self.block(stmt.body if test.value else stmt.orelse, env)
            body, env_a = self.block(stmt.body, dict(env))
            orelse, env_b = self.block(stmt.orelse, dict(env))
            merged = {k: v for k, v in env_a.items() if k in env_b and env_b[k] == v and type(env_b[k]) is type(v)}
            return [ast.If(test=test, body=body or [ast.Pass()], orelse=orelse)], merged
        if isinstance(stmt, ast.For):
            return self.for_loop(stmt, env)
        if isinstance(stmt, ast.While):
            loop_env = {k: v for k, v in env.items() if k not in _assigned(stmt.body)}
            test = _fold(stmt.test, loop_env)
            if _is_const(test) and not test.value:
                return [], env
            body, _ = self.block(stmt.body, dict(loop_env))
            return [ast.While(test=test, body=body or [ast.Pass()], orelse=[])], loop_env
        if isinstance(stmt, (ast.Continue, ast.Break, ast.Pass)):
            return [stmt], env
        if isinstance(stmt, ast.Return):
            return [ast.Return(value=None if stmt.value is None else _fold(stmt.value, env))], env
        raise Unsupported(f"statement {ast.unparse(stmt)[:80]!r}")

    def _load_fold_subscript(self, node: ast.Subscript, env: dict[str, Any]) -> ast.Subscript:
        folded = copy.copy(node)
        folded.slice = _fold(node.slice, env)
        value = _fold(node.value, env) if isinstance(node.value, ast.Subscript) else node.value
        folded.value = value
        out = _Folder(env).visit_Subscript(ast.Subscript(value=folded.value, slice=folded.slice, ctx=ast.Load()))
        if isinstance(out, ast.Subscript):
            out.ctx = node.ctx
            return out
        return folded

    def assign(self, stmt: ast.Assign, env: dict[str, Any]) -> tuple[list[ast.stmt], dict[str, Any]]:
        if len(stmt.targets) != 1:
            raise Unsupported(f"chained assignment {ast.unparse(stmt)[:80]!r}")
        target, value = stmt.targets[0], _fold(stmt.value, env)
        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
            if len(target.elts) != len(value.elts):
                raise Unsupported(f"unpacking {ast.unparse(stmt)[:80]!r}")
            out: list[ast.stmt] = []
            # simultaneous assignment: every right side is read before any target is bound
            temps = {}
            for t, v in zip(target.elts, value.elts):
                if isinstance(t, ast.Name) and isinstance(v, ast.Name) and t.id == v.id:
                    continue
                temps[t] = v
            for t, v in temps.items():
                new, env = self.assign(ast.Assign(targets=[t], value=v), env)
                out.extend(new)
            return out, env
        if isinstance(target, ast.Tuple) and _is_const(value) and isinstance(value.value, tuple):
            out = []
            for t, v in zip(target.elts, value.value):
                new, env = self.assign(ast.Assign(targets=[t], value=_const(v)), env)
                out.extend(new)
            return out, env
        if isinstance(target, ast.Name):
            env = dict(env)
            if isinstance(value, ast.Tuple):
                self.tuples[target.id] = value
            else:
                self.tuples.pop(target.id, None)
            if _is_const(value):
                env[target.id] = value.value  # later reads are folded; the assignment stays for reads after
                return [ast.Assign(targets=[target], value=value)], env  # a loop that rebinds the name
            env.pop(target.id, None)
            return [ast.Assign(targets=[target], value=value)], env
        if isinstance(target, ast.Tuple):
            env = {k: v for k, v in env.items() if k not in _assigned([stmt])}
            if isinstance(value, ast.Name) and all(isinstance(t, ast.Name) for t in target.elts):
                self.unpacked[value.id] = [t.id for t in target.elts]
            return [ast.Assign(targets=[target], value=value)], env
        if isinstance(target, ast.Subscript):
            return [ast.Assign(targets=[self._load_fold_subscript(target, env)], value=value)], env
        raise Unsupported(f"assignment {ast.unparse(stmt)[:80]!r}")

    def for_loop(self, stmt: ast.For, env: dict[str, Any]) -> tuple[list[ast.stmt], dict[str, Any]]:
        if stmt.orelse or not isinstance(stmt.target, ast.Name):
            raise Unsupported(f"loop {ast.unparse(stmt)[:80]!r}")
        it = _fold(stmt.iter, env)
        values = _range_values(it)
        wanted = values is not None and (len(values) == 1 or _indexes_constants(stmt, env))
        if wanted and len(values) <= MAX_UNROLL and not _has_loop_exit(stmt.body):
            out: list[ast.stmt] = []
            for value in values:
                body, env = self.block(copy.deepcopy(stmt.body), dict(env, **{stmt.target.id: value}))
                out.extend(body)
            env = {k: v for k, v in env.items() if k != stmt.target.id}
            return out, env
        loop_env = {k: v for k, v in env.items() if k not in _assigned(stmt.body) and k != stmt.target.id}
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "prange":
            it.func = ast.Name(id="range", ctx=ast.Load())  # one thread: the specialised engine is serial
        body, _ = self.block(stmt.body, dict(loop_env))
        return [ast.For(target=stmt.target, iter=it, body=body or [ast.Pass()], orelse=[])], loop_env

    def inline(self, fn: ast.FunctionDef, call: ast.Call, env: dict[str, Any]) -> list[ast.stmt]:
        """``fn``'s body for this call: its parameters bound to the call's arguments, its locals renamed."""
        params = [a.arg for a in fn.args.args]
        if call.keywords or len(call.args) != len(params) or fn.args.vararg or fn.args.kwarg:
            raise Unsupported(f"call {ast.unparse(call)[:80]!r}")
        if _has_return_value(fn.body):
            raise Unsupported(f"{fn.name} returns a value: it cannot be inlined as a statement")
        suffix = f"_{fn.name}{next(self.counter)}"
        local = (_assigned(fn.body) | {n.target.id for n in ast.walk(fn) if isinstance(n, ast.For)}) - set(params)
        reassigned = _assigned(fn.body) & set(params)
        if reassigned:
            raise Unsupported(f"{fn.name} assigns its parameters {sorted(reassigned)}")
        bound = {p: _fold(copy.deepcopy(a), env) for p, a in zip(params, call.args)}
        for p, a in bound.items():  # thread_chunks unpacks `layout` and `flags` again: the loop's names
            if isinstance(a, ast.Name) and a.id == "layout":
                bound[p] = ast.Tuple(elts=[ast.Name(id=n, ctx=ast.Load()) for n in LAYOUT], ctx=ast.Load())
            elif isinstance(a, ast.Name) and a.id in self.tuples:
                bound[p] = copy.deepcopy(self.tuples[a.id])
        body = copy.deepcopy(fn.body)
        names = {name: name + suffix for name in local}
        kept = []
        for stmt in body:  # `a, b = data` where the loop already unpacked `data`: alias, do not unpack again
            if (
                isinstance(stmt, ast.Assign)
                and isinstance(stmt.targets[0], ast.Tuple)
                and isinstance(stmt.value, ast.Name)
                and isinstance(bound.get(stmt.value.id), ast.Name)
                and bound[stmt.value.id].id in self.unpacked
                and len(stmt.targets[0].elts) == len(self.unpacked[bound[stmt.value.id].id])
            ):
                for t, outer in zip(stmt.targets[0].elts, self.unpacked[bound[stmt.value.id].id]):
                    names[t.id] = outer
                continue
            kept.append(stmt)
        body = kept
        renamer = _Rename(names, bound)
        out = []
        for stmt in body:
            stmt = renamer.visit(stmt)
            if isinstance(stmt, ast.Return) and stmt.value is None:
                raise Unsupported(f"{fn.name} returns early; its early return must fold away")
            out.append(stmt)
        return out


class _Rename(ast.NodeTransformer):
    def __init__(self, names: dict[str, str], bound: dict[str, ast.AST]):
        self.names, self.bound = names, bound

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.bound and isinstance(node.ctx, ast.Load):
            return copy.deepcopy(self.bound[node.id])
        if node.id in self.names:
            return ast.Name(id=self.names[node.id], ctx=node.ctx)
        return node


def _indexes_constants(loop: ast.For, env: dict[str, Any]) -> bool:
    """Whether the loop's variable indexes a constant tuple in its body (``sizes[k]``): only then does
    unrolling it turn run-time values into constants (LLVM unrolls short loops by itself)."""
    var = loop.target.id
    for node in ast.walk(ast.Module(body=loop.body, type_ignores=[])):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            if isinstance(env.get(node.value.id), tuple) and any(
                isinstance(n, ast.Name) and n.id == var for n in ast.walk(node.slice)
            ):
                return True
    return False


def _has_loop_exit(body: list[ast.stmt]) -> bool:
    return any(isinstance(n, (ast.Break, ast.Continue)) for stmt in body for n in ast.walk(stmt))


def _has_return_value(body: list[ast.stmt]) -> bool:
    return any(isinstance(n, ast.Return) and n.value is not None for stmt in body for n in ast.walk(stmt))


def render(sizes, flags: dict[str, Any], rows: int = 0) -> str:
    """The generated module's source for ``sizes`` and the option ``flags`` (see FLAGS).

    ``rows`` > 0: for full-batch steps over exactly that many rows (at most ``ROWS_LIMIT``), with the
    row count a constant: LLVM then unrolls every loop over rows and keeps a tiny table's iteration in
    registers (measured on the seed's 4 rows: 0.111 us per iteration against 0.138 with the rows
    read at run time, libm's exp in both)."""
    if not 0 <= rows <= ROWS_LIMIT:
        raise ValueError(f"rows must be 0 (any) or at most {ROWS_LIMIT}, not {rows}")
    sizes = tuple(int(n) for n in sizes)
    missing = set(FLAGS) - set(flags)
    if missing:
        raise ValueError(f"flags lack {sorted(missing)}")
    woff, boff, aoff, n_weights = offsets(sizes)
    pieces = {name: _function(getattr(step, name)) for name in PIECES}
    thread = _function(step.thread_chunks)
    loop = _function(step.interval_loop)
    n_params = n_weights + (sum(sizes[1:]) if flags["use_bias"] else 0)
    constants = dict(
        sizes=sizes, woff=woff, boff=boff, aoff=aoff, nW=n_weights, nP=n_params, T=1, ptr=0, update=True,
        **{k: flags[k] for k in FLAGS},
    )  # fmt: skip
    spec = _Specialiser(pieces, thread)
    body: list[ast.stmt] = []
    env: dict[str, Any] = dict(constants)
    if rows:
        env.update(batch_size=0, cr=rows)  # full batch: one chunk of all the rows
    for stmt in loop.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Name) and stmt.value.id in ("layout", "options"):
            continue  # the layout and the options are the constants above, and `numbers`
        if rows and isinstance(stmt, ast.Assign) and ast.unparse(stmt.targets[0]) == "n_rows":
            stmt = ast.Assign(targets=stmt.targets, value=_const(rows))
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue
        new, env = spec.statement(stmt, env)
        body.extend(new)
    returns = [n for stmt in body for n in ast.walk(stmt) if isinstance(n, ast.Return)]
    if len(returns) != 1 or body[-1] is not returns[0]:
        raise Unsupported("a return other than the loop's last survived the folding")
    fn = ast.parse("@_jit()\ndef train(data, state, cr, start, iterations, numbers):\n    pass").body[0]
    fn.body = [ast.parse(f"({', '.join(NUMBERS)},) = numbers").body[0], *body]
    module = ast.Module(body=[fn], type_ignores=[])
    ast.fix_missing_locations(module)
    source = ast.unparse(module)
    if "layout" in source:
        raise Unsupported("the layout tuple survived the folding")
    names = sorted(
        {n.id for n in ast.walk(module) if isinstance(n, ast.Name)}
        & {"fast_sigmoid", "sigmoid_inplace", "row_loss", "update_one", "_u", "_gemm_call"}
    )
    header = (
        f'"""Generated by sigmanet for layer sizes {sizes}{f", {rows} rows" if rows else ""} '
        f"and options {dict(sorted(flags.items()))}:\n"
        'step.interval_loop partially evaluated (see sigmanet.backends.numba._specialise). Do not edit."""\n'
        "import math\n\nimport numpy as np\n\n"
        f"from sigmanet.backends.numba.step import _jit{''.join(', ' + n for n in names)}\n\n\n"
    )
    return header + source + "\n"


# -- the generated modules, on disk --


def prune(folder: Path, keep: int | None = None) -> None:
    """Delete all but the ``keep`` (default ``MAX_GENERATED``) most recently used generated modules,
    with their numba cache files."""
    keep = MAX_GENERATED if keep is None else keep
    modules = sorted(
        folder.glob("sigmanet_generated_*.py"), key=lambda p: _mtime(p.with_suffix(".used")) or _mtime(p), reverse=True
    )
    for old in modules[keep:]:
        for path in [old, old.with_suffix(".used"), *(folder / "__pycache__").glob(f"{old.stem}.*")]:
            with contextlib.suppress(OSError):
                path.unlink()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def specialised(sizes, flags: dict[str, Any], rows: int = 0):
    """The ``train`` function specialised to ``sizes``, ``flags`` (and ``rows``: see render), memoised
    per process."""
    return _specialised(tuple(int(n) for n in sizes), tuple(sorted(flags.items())), int(rows))


@functools.cache
def _specialised(sizes: tuple[int, ...], flags: tuple, rows: int = 0) -> Any:
    source = render(sizes, dict(flags), rows)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    name = f"sigmanet_generated_{'_'.join(map(str, sizes))}_{digest}"
    if name in sys.modules:
        return sys.modules[name].train
    root = cache_folder()
    folder = None if root is None else root / "generated"
    if folder is not None:
        try:
            folder.mkdir(exist_ok=True)
        except OSError:
            folder = None
    if folder is None or not os.access(folder, os.W_OK):
        namespace: dict = {"__name__": name}
        exec(compile(source, f"<{name}>", "exec"), namespace)
        return namespace["train"]
    path = folder / f"{name}.py"
    if not path.exists():  # write once, atomically: the file's mtime keys numba's cache
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.replace(tmp, path)
        prune(folder)
    # Mark the use on a stamp beside the module, never on the module itself:
    # its mtime keys numba's cache, and touching it would force a recompile.
    with contextlib.suppress(OSError):
        path.with_suffix(".used").touch()
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module.train
