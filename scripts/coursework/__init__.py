"""The course edition's grader and workflow, used by ``scripts/course.py``.

* :mod:`.behaviour`: the hidden checks, run on a submission's behaviour (a sandboxed process
  of its own serves the submission's functions and names; the grader draws the inputs for each
  grading run and computes the reference values itself);
* :mod:`.workflow`: a folder of submissions graded in one batch, with a roster, a feedback
  file per submission and a gradebook across assignments.
* :mod:`.forks`: the fork server the submissions' processes are forked from (their imports made
  once), where the system allows it.
"""
