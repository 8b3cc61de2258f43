"""Agreement with human coders: does the machine code like a person does? (docs/validation.md)

One job per module:

- :mod:`.config`    the settings (:class:`~analysis.agreement.config.AgreementConfig`)
- :mod:`.raters`    the raters' per-frame tracks: coders (codings contract), the model (read-out), consensus
- :mod:`.kappa`     time-unit bins, Cohen's kappa, percent agreement, Gwet's AC1, prevalence
- :mod:`.percent`   per-participant percent time: ICC(2,1), ICC(3,1), Bland-Altman, MAE, engagement
- :mod:`.events`    event precision / recall / F1 with an onset tolerance and an overlap rule
- :mod:`.verdicts`  bootstrap over participants, the verdict per action
- :mod:`.compare`   every pair of raters -> the tables (fixed column orders)
- :mod:`.figures`   Bland-Altman per action, kappa by action with the coder range
- :mod:`.outputs`   writing ``validation/`` as one staged set
- :mod:`.hook`      :func:`~analysis.agreement.hook.run_validation` for the flow
- :mod:`.cli`       ``python -m analysis.agreement``
"""
