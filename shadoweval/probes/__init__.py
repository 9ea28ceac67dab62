"""Red-team probes: adversarial suites sent to the candidates and the baseline, never to users.

``suite`` loads and expands the YAML suites, ``transforms`` makes the variants, ``detect``
judges each answer, ``runner`` sends probes and writes pair records, ``scheduler`` runs them
in the proxy's background, ``results`` builds the attack-success table and the CI gate
(``results`` needs the ``report`` extra: numpy).
"""

from shadoweval.probes.detect import Expect, Judge, Verdict
from shadoweval.probes.runner import ProbeResult, ProbeRunner, run_once
from shadoweval.probes.scheduler import ProbeScheduler
from shadoweval.probes.suite import BaseProbe, Probe, build, expand, load_suites, render

__all__ = [
    "BaseProbe",
    "Expect",
    "Judge",
    "Probe",
    "ProbeResult",
    "ProbeRunner",
    "ProbeScheduler",
    "Verdict",
    "build",
    "expand",
    "load_suites",
    "render",
    "run_once",
]
