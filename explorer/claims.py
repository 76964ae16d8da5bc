"""What the Learn page teaches, each claim pinned to a reference run whose numbers bear it out.

A claim's chart always draws its reference run, a run recorded under ``assets/recorded/`` (the GPU recording, in
the paper's regime, where there is one; else the CPU one): never whatever run is newest. A run the student started
is drawn beside it, labelled as theirs. Each claim carries a `check` that reads the reference run's records and
says, with the numbers, whether the text is true of it; tests/test_claims.py runs every check, so a re-recorded
reference that no longer shows what the text says fails the build instead of misleading a class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .config import ModelConfig
from .memory import model_footprint
from .verdicts import MARGIN, RunRecords, mean_response_std


@dataclass(frozen=True)
class Claim:
    key: str
    heading: str
    text: str  # Markdown, ours (never a visitor's)
    reference: str  # the recorded preset whose run the chart draws
    chart: str  # a chart of explorer.ui.figures.CHARTS, or "architecture" for the block diagrams
    check: Callable[[RunRecords], tuple[bool, str]]  # is the text true of the reference run, and the numbers


def _train(r: RunRecords, label: str) -> float:
    value = r.error(label, "train")
    if value is None:
        raise ValueError(f"{label} has no final training error in the reference run")
    return value


def _deeper_plain_trains_worse(r: RunRecords) -> tuple[bool, str]:
    plain20, plain56 = _train(r, "plain20"), _train(r, "plain56")
    return plain56 > plain20 + MARGIN, f"training error: Plain-56 {plain56:.1f}%, Plain-20 {plain20:.1f}%"


def _not_overfitting(r: RunRecords) -> tuple[bool, str]:
    train20, train56 = _train(r, "plain20"), _train(r, "plain56")
    test20, test56 = r.error("plain20", "test"), r.error("plain56", "test")
    held = train56 > train20 + MARGIN and test56 is not None and test20 is not None and test56 > test20
    return held, (f"Plain-56 is worse on both: training {train56:.1f}% vs {train20:.1f}%, test "
                  f"{test56:.1f}% vs {test20:.1f}%")


def _shortcut_adds_nothing(r: RunRecords) -> tuple[bool, str]:
    plain, residual = (model_footprint(ModelConfig.parse(label))[1] for label in ("plain56", "resnet56"))
    return plain == residual, f"parameters: Plain-56 {plain:,}, ResNet-56 {residual:,}"


def _deeper_residual_trains_as_well(r: RunRecords) -> tuple[bool, str]:
    res20, res56 = _train(r, "resnet20"), _train(r, "resnet56")
    return res56 <= res20 + MARGIN, f"training error: ResNet-56 {res56:.1f}%, ResNet-20 {res20:.1f}%"


def _small_responses(r: RunRecords) -> tuple[bool, str]:
    plain, residual = mean_response_std(r.probes, "plain56"), mean_response_std(r.probes, "resnet56")
    if plain is None or residual is None:
        return False, "the reference run has no response probes"
    return residual < plain, f"mean layer response std: ResNet-56 {residual:.3f}, Plain-56 {plain:.3f}"


CLAIMS: tuple[Claim, ...] = (
    Claim("deeper-worse", "1. More layers, more training error",
          "Take a convolutional net that trains well and stack more layers on it. The deeper net could always do at "
          "least as well: the extra layers would only have to pass their input through unchanged. Yet a 56-layer "
          "plain net ends up with **higher training error** than a 20-layer one (He et al. 2015, Fig. 1). "
          "*Chart: the plain panel, darker red (56 layers) above lighter red (20).*",
          "degradation", "errors", _deeper_plain_trains_worse),
    Claim("not-overfitting", "2. It is not overfitting",
          "Overfitting means low training error and high test error. Here the **training** error itself is worse "
          "(the dashed curves), and the test error with it: the deeper net is harder to *optimise*, not too "
          "flexible. *Chart: the same panel; dashed lines are training error, solid lines test error.*",
          "degradation", "errors", _not_overfitting),
    Claim("residual-idea", "3. The residual idea",
          "Instead of asking a few layers to produce the wanted mapping H(x) outright, let them produce only the "
          "**change**, F(x) = H(x) − x, and add the input back through a shortcut: the block outputs F(x) + x. A "
          "block that should do nothing now only has to push its weights towards zero, which training finds easily. "
          "The identity shortcut adds no parameters. *Chart: both 56-layer nets block by block.*",
          "degradation", "architecture", _shortcut_adds_nothing),
    Claim("depth-helps", "4. Depth helps again",
          "With shortcuts the 56-layer net trains **at least as well** as the 20-layer one. "
          "*Chart: the residual panel, darker blue (56) at or below lighter blue (20).*",
          "degradation", "errors", _deeper_residual_trains_as_well),
    Claim("small-responses", "5. Residual layers make small corrections",
          "The responses of residual layers are weaker than those of plain layers (He et al. 2015, Fig. 7): each "
          "block adjusts its input slightly rather than rebuilding it. *Chart: the std of every layer's response "
          "(its BatchNorm output, with the batch's own statistics) at the end of training; the residual net's "
          "layers sit below the plain net's.*",
          "degradation", "responses", _small_responses),
)
