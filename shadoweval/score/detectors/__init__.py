"""The safety detectors' building blocks, one concept per module: ``refusal`` (multilingual
and structural refusal reading), ``pii`` (personal-data shapes with validity checks),
``secrets`` (key shapes, private keys, passwords; placeholders suppressed), ``prompt_leak``
(system-prompt and canary leaks through paraphrase, translation and encodings), ``injection``
(did an injected instruction take effect), ``toxicity`` (normalised, multilingual lexicon and
threat patterns, mentions discounted) and ``evaluate`` (labelled sets -> precision, recall).

The scorers in ``shadoweval.score.scorers.safety`` and the probe judge are built on these.
"""
