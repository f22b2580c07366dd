"""Keep rules: which recorded episodes keep their video, decided from the episode's outcome after it ended.

A rule is a msgspec Struct (`{"rule": "worst", "k": 5}` on the wire, in `OutputSpec.keep`), and the same
Struct is what Python users pass as `keep=` (`keep.failures() | keep.return_below(-50)`). One engine,
`Keeper`, evaluates either, so a request and a training loop with the same rule keep the same episodes.

Most rules decide at the episode's end. `worst`/`best` k decide when their group closes (a window of n
candidates, or the whole run / recorder life); until then the candidates wait. An episode that falls out
of the k held so far can never come back, so it is discarded at once: at most k candidates per rule are
ever held, whatever the run's length. That is the bound on staged files waiting for a decision.

Decisions depend only on the outcomes and their order, never on time or on which process computes them:
a restarted simulator, or a replay, reaches the same decisions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Iterable, Union

import msgspec

__all__ = [
    "AllOf", "AnyOf", "Best", "Decision", "Every", "Failures", "Keeper", "NewBest", "Outcome", "ReturnAbove",
    "ReturnBelow", "Rule", "Worst", "all_of", "any_of", "best", "describe", "every", "failures", "immediate",
    "new_best", "return_above", "return_below", "worst", "MAX_HELD", "Producer", "wire_rule", "decode", "decide_all",
]

# k of worst/best: how many candidates one rule may hold in staging until its group closes.
MAX_HELD = 1000
K = Annotated[int, msgspec.Meta(ge=1, le=MAX_HELD)]
Window = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What is known of an episode when it ends: what a `keep=` callable receives."""

    index: int  # the episode's index among the recorder's (or the run's) episodes
    seed: int | None = None
    length: int = 0  # steps
    episode_return: float = 0.0
    terminated: bool = False
    truncated: bool = False
    info: dict[str, Any] = {}  # the final step's `info` (recorders only)


class _Rule(msgspec.Struct, frozen=True, kw_only=True, tag_field="rule", omit_defaults=True):
    """Base of every rule: `a | b` keeps what either keeps, `a & b` what both keep."""

    def __or__(self, other: "Rule") -> "AnyOf":
        return any_of(self, other)

    def __and__(self, other: "Rule") -> "AllOf":
        return all_of(self, other)


class Failures(_Rule, frozen=True, tag="failures"):
    """Episodes the env ended itself (`terminated`: the robot fell), not the time limit."""


class ReturnBelow(_Rule, frozen=True, tag="return_below"):
    value: float


class ReturnAbove(_Rule, frozen=True, tag="return_above"):
    value: float


class NewBest(_Rule, frozen=True, tag="new_best"):
    """An episode whose return beats every earlier candidate's (the first candidate sets the record)."""


class Every(_Rule, frozen=True, tag="every"):
    """Every n-th of the episodes `of` keeps (all candidates when `of` is absent): the 1st, n+1-th, …"""

    n: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    of: "Rule | None" = None

    def __post_init__(self) -> None:
        _require_immediate(self.of, "every")


class Worst(_Rule, frozen=True, tag="worst"):
    """The k lowest returns among the candidates (that `of` keeps), per window of `window` candidates,
    or over the whole run / recorder life when `window` is absent. Ties: the earlier episode."""

    k: K
    window: Window | None = None
    of: "Rule | None" = None

    def __post_init__(self) -> None:
        _require_immediate(self.of, "worst")


class Best(_Rule, frozen=True, tag="best"):
    """The k highest returns; otherwise as `worst`."""

    k: K
    window: Window | None = None
    of: "Rule | None" = None

    def __post_init__(self) -> None:
        _require_immediate(self.of, "best")


class AnyOf(_Rule, frozen=True, tag="any"):
    """Kept when any of the rules keeps it."""

    rules: Annotated[list["Rule"], msgspec.Meta(min_length=1, max_length=16)]


class AllOf(_Rule, frozen=True, tag="all"):
    """Kept when every one of the rules keeps it."""

    rules: Annotated[list["Rule"], msgspec.Meta(min_length=1, max_length=16)]


class Producer(_Rule, frozen=True, tag="producer"):
    """Decided by the recording process itself (a recorder's Python `keep=` callable), which publishes
    each decision; a request cannot use it (the simulator has no callable to run)."""

    name: Annotated[str, msgspec.Meta(max_length=200)] = ""


Rule = Union[Failures, ReturnBelow, ReturnAbove, NewBest, Every, Worst, Best, AnyOf, AllOf, Producer]

_decoder = msgspec.json.Decoder(Rule)


def decode(data: bytes | str) -> Rule:
    """A rule from JSON, validated (`{"rule": "worst", "k": 5, "window": 100}`)."""
    return _decoder.decode(data)


def immediate(rule: Rule) -> bool:
    """Whether the rule decides every episode when it ends (no worst/best k inside)."""
    if isinstance(rule, (Worst, Best)):
        return False
    if isinstance(rule, (AnyOf, AllOf)):
        return all(immediate(r) for r in rule.rules)
    if isinstance(rule, Every):
        return rule.of is None or immediate(rule.of)
    return True


def _require_immediate(of: Rule | None, name: str) -> None:
    if of is not None and not immediate(of):
        raise ValueError(f"the `of` rule of {name!r} must decide at the episode's end (no worst/best inside)")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def describe(rule: Rule | Callable[..., Any]) -> str:
    """A rule in a few words, as events and the ui show it."""
    if isinstance(rule, Failures):
        return "failures"
    if isinstance(rule, ReturnBelow):
        return f"return < {rule.value:g}"
    if isinstance(rule, ReturnAbove):
        return f"return > {rule.value:g}"
    if isinstance(rule, NewBest):
        return "new best return"
    if isinstance(rule, Every):
        of = f" of ({describe(rule.of)})" if rule.of is not None else ""
        return f"every {_ordinal(rule.n)}{of}" if rule.n > 1 else f"all{of}"
    if isinstance(rule, (Worst, Best)):
        word = "worst" if isinstance(rule, Worst) else "best"
        of = f" of ({describe(rule.of)})" if rule.of is not None else ""
        per = f" per {rule.window}" if rule.window else ""
        return f"{word} {rule.k}{of}{per}"
    if isinstance(rule, (AnyOf, AllOf)):
        word = "any" if isinstance(rule, AnyOf) else "all"
        return f"{word} of ({', '.join(describe(r) for r in rule.rules)})"
    if isinstance(rule, Producer):
        return rule.name or "custom keep rule"
    return getattr(rule, "description", None) or getattr(rule, "__name__", None) or "custom keep rule"


# --- Python constructors: what `keep=` reads like ----------------------------------------------------


def failures() -> Failures:
    return Failures()


def return_below(value: float) -> ReturnBelow:
    return ReturnBelow(value=float(value))


def return_above(value: float) -> ReturnAbove:
    return ReturnAbove(value=float(value))


def new_best() -> NewBest:
    return NewBest()


def every(n: int, of: Rule | None = None) -> Every:
    return _checked(Every(n=n, of=of))


def worst(k: int, window: int | None = None, of: Rule | None = None) -> Worst:
    return _checked(Worst(k=k, window=window, of=of))


def best(k: int, window: int | None = None, of: Rule | None = None) -> Best:
    return _checked(Best(k=k, window=window, of=of))


def _flat(cls: type, rules: Iterable[Rule]) -> list[Rule]:
    out: list[Rule] = []
    for r in rules:
        out += r.rules if isinstance(r, cls) else [r]
    return out


def any_of(*rules: Rule) -> AnyOf:
    return _checked(AnyOf(rules=_flat(AnyOf, rules)))


def all_of(*rules: Rule) -> AllOf:
    return _checked(AllOf(rules=_flat(AllOf, rules)))


def _checked(rule: Rule) -> Rule:
    """Struct constructors skip the limits in the types (and __post_init__'s checks of nested rules
    built elsewhere); a JSON round trip applies them, with the field's path in the error."""
    return decode(msgspec.json.encode(rule))


# --- the engine ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    index: int
    kept: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The fate of one candidate: `rule` is the whole rule in words, `reason` what decided it."""

    outcome: Outcome
    kept: bool
    rule: str
    reason: str


def _num(x: float) -> str:
    return f"{x:.6g}"


class _Node:
    def push(self, o: Outcome) -> list[Verdict]:
        raise NotImplementedError

    def close(self) -> list[Verdict]:
        return []


class _Predicate(_Node):
    def __init__(self, test: Callable[[Outcome], bool], yes: str, no: Callable[[Outcome], str]) -> None:
        self.test, self.yes, self.no = test, yes, no

    def push(self, o: Outcome) -> list[Verdict]:
        kept = bool(self.test(o))
        return [Verdict(o.index, kept, self.yes if kept else self.no(o))]


class _NewBest(_Node):
    def __init__(self) -> None:
        self.record: float | None = None

    def push(self, o: Outcome) -> list[Verdict]:
        r = o.episode_return
        if math.isnan(r):
            return [Verdict(o.index, False, "new best return: the return is NaN")]
        if self.record is None or r > self.record:
            before, self.record = self.record, r
            why = "first candidate" if before is None else f"return {_num(r)} beats {_num(before)}"
            return [Verdict(o.index, True, f"new best return: {why}")]
        return [Verdict(o.index, False, f"new best return: {_num(r)} does not beat {_num(self.record)}")]


class _Every(_Node):
    def __init__(self, n: int, of: _Node | None, text: str) -> None:
        self.n, self.of, self.text = n, of, text
        self.count = 0

    def push(self, o: Outcome) -> list[Verdict]:
        if self.of is not None:
            (v,) = self.of.push(o)
            if not v.kept:
                return [v]
        self.count += 1
        if (self.count - 1) % self.n == 0:
            return [Verdict(o.index, True, f"{self.text}: the {_ordinal(self.count)}")]
        return [Verdict(o.index, False, f"{self.text}: the {_ordinal(self.count)}, not one of every {self.n}")]


class _Rank(_Node):
    """worst/best k per window: holds at most k members; a member pushed out is discarded at once."""

    def __init__(self, k: int, window: int | None, of: _Node | None, lowest: bool, text: str) -> None:
        self.k, self.window, self.of, self.lowest, self.text = k, window, of, lowest, text
        self.members: list[tuple[tuple, int]] = []  # (rank key, index); smaller key = more wanted
        self.seen = 0
        self.returns: dict[int, float] = {}

    def _key(self, index: int, r: float) -> tuple:
        # NaN never ranks among the kept; ties go to the earlier episode.
        nan = math.isnan(r)
        return (nan, 0.0 if nan else (r if self.lowest else -r), index)

    def push(self, o: Outcome) -> list[Verdict]:
        out: list[Verdict] = []
        self.seen += 1
        if self.of is not None:
            (v,) = self.of.push(o)
            if not v.kept:
                out.append(v)
        if not out:
            self.members.append((self._key(o.index, o.episode_return), o.index))
            self.returns[o.index] = o.episode_return
            if len(self.members) > self.k:
                self.members.sort()
                _, gone = self.members.pop()
                r = self.returns.pop(gone)
                side = "lowest" if self.lowest else "highest"
                out.append(Verdict(gone, False, f"{self.text}: return {_num(r)} is not among the {self.k} {side}"))
        if self.window is not None and self.seen >= self.window:
            out += self.close()
        return out

    def close(self) -> list[Verdict]:
        side = "lowest" if self.lowest else "highest"
        group = f"of {self.seen}" if self.seen else ""
        out = [Verdict(i, True, f"{self.text}: return {_num(self.returns[i])} is among the {self.k} {side} {group}"
                       .rstrip()) for _, i in sorted(self.members)]
        self.members, self.returns, self.seen = [], {}, 0
        return out


class _Combine(_Node):
    """any / all of several rules; decides an episode as soon as its children's verdicts settle it."""

    def __init__(self, children: list[_Node], want_any: bool) -> None:
        self.children, self.want_any = children, want_any
        self.votes: dict[int, list[Verdict | None]] = {}
        self.decided: set[int] = set()

    def _collect(self, child: int, verdicts: list[Verdict], out: list[Verdict]) -> None:
        n = len(self.children)
        for v in verdicts:
            votes = self.votes.setdefault(v.index, [None] * n)
            votes[child] = v
            done = all(x is not None for x in votes)
            if v.index not in self.decided:
                settled = v if v.kept == self.want_any else None
                if settled is None and done:
                    settled = Verdict(v.index, not self.want_any, "; ".join(x.reason for x in votes))
                if settled is not None:
                    self.decided.add(v.index)
                    out.append(Verdict(v.index, settled.kept, settled.reason))
            if done:
                del self.votes[v.index]
                self.decided.discard(v.index)

    def push(self, o: Outcome) -> list[Verdict]:
        out: list[Verdict] = []
        for i, c in enumerate(self.children):
            self._collect(i, c.push(o), out)
        return out

    def close(self) -> list[Verdict]:
        out: list[Verdict] = []
        for i, c in enumerate(self.children):
            self._collect(i, c.close(), out)
        return out


def _build(rule: Rule | Callable[[Outcome], Any]) -> _Node:
    if isinstance(rule, Failures):
        return _Predicate(lambda o: o.terminated, "failures: terminated",
                          lambda o: "failures: not terminated" + (" (time limit)" if o.truncated else ""))
    if isinstance(rule, ReturnBelow):
        v = rule.value
        return _Predicate(lambda o: o.episode_return < v, f"return < {v:g}",
                          lambda o: f"return < {v:g}: return is {_num(o.episode_return)}")
    if isinstance(rule, ReturnAbove):
        v = rule.value
        return _Predicate(lambda o: o.episode_return > v, f"return > {v:g}",
                          lambda o: f"return > {v:g}: return is {_num(o.episode_return)}")
    if isinstance(rule, NewBest):
        return _NewBest()
    if isinstance(rule, Every):
        return _Every(rule.n, None if rule.of is None else _build(rule.of), describe(rule))
    if isinstance(rule, (Worst, Best)):
        return _Rank(rule.k, rule.window, None if rule.of is None else _build(rule.of), isinstance(rule, Worst),
                     describe(rule))
    if isinstance(rule, (AnyOf, AllOf)):
        return _Combine([_build(r) for r in rule.rules], isinstance(rule, AnyOf))
    if isinstance(rule, Producer):
        raise ValueError("a \"producer\" keep rule is decided by the recording process; it cannot be evaluated here")
    if callable(rule):
        text = describe(rule)
        return _Predicate(rule, f"{text}: true", lambda o: f"{text}: false")
    raise TypeError(f"keep= takes a rule of simreel.contract.keep or a callable(outcome) -> bool, not {type(rule).__name__}")


@dataclass
class Keeper:
    """Feeds outcomes, in episode order, through one rule; returns each candidate's Decision once it is
    known (at once, or when its worst/best group closes). `close()` decides every candidate left.

    `rule` is a rule Struct or any callable(Outcome) -> bool (decided at once)."""

    rule: Any
    text: str = ""
    _root: _Node = field(init=False, repr=False)
    _pending: dict[int, Outcome] = field(init=False, default_factory=dict, repr=False)
    _last: int | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self._root = _build(self.rule)
        self.text = self.text or describe(self.rule)

    @property
    def pending(self) -> list[Outcome]:
        """Candidates still waiting for their decision, in episode order."""
        return [self._pending[i] for i in sorted(self._pending)]

    def push(self, outcome: Outcome) -> list[Decision]:
        if self._last is not None and outcome.index <= self._last:
            raise ValueError(f"episode {outcome.index} comes after episode {self._last}: give outcomes once, in order")
        self._last = outcome.index
        self._pending[outcome.index] = outcome
        try:
            verdicts = self._root.push(outcome)
        except BaseException:
            del self._pending[outcome.index]  # a callable that raised decides nothing
            raise
        return self._decide(verdicts)

    def __call__(self, outcome: Outcome) -> list[Decision]:
        return self.push(outcome)

    def close(self) -> list[Decision]:
        out = self._decide(self._root.close())
        assert not self._pending, f"undecided after close: {sorted(self._pending)}"
        return out

    def _decide(self, verdicts: list[Verdict]) -> list[Decision]:
        out = []
        for v in verdicts:
            o = self._pending.pop(v.index, None)
            if o is not None:
                out.append(Decision(o, v.kept, self.text, v.reason))
        return sorted(out, key=lambda d: d.outcome.index)


def wire_rule(rule: Any) -> Rule:
    """What a recorder announces as its run's `outputs.keep`: the rule itself, or for a Python callable
    a `producer` rule naming it (the encoder holds the videos either way; the recorder decides)."""
    if isinstance(rule, _Rule):
        return rule
    if callable(rule):
        return Producer(name=describe(rule)[:200])
    raise TypeError(f"keep= takes a rule of simreel.contract.keep or a callable(outcome) -> bool, not {type(rule).__name__}")


def decide_all(rule: Any, outcomes: Iterable[Outcome]) -> list[Decision]:
    """Every decision for a finished sequence of outcomes, in episode order (what a replay computes)."""
    k = Keeper(rule)
    out = [d for o in outcomes for d in k.push(o)]
    out += k.close()
    return sorted(out, key=lambda d: d.outcome.index)
