"""Answer grading shared by every recipe and the evaluation harness: `grade` one response, `grade_many` a batch."""

from reasontrain.grading.extract import EXTRACTORS, extract_answer, gold_answer
from reasontrain.grading.grader import REASONS, GradeOptions, Verdict, grade, grade_many
from reasontrain.grading.timeouts import shutdown

__all__ = ["EXTRACTORS", "REASONS", "GradeOptions", "Verdict", "extract_answer", "gold_answer", "grade",
           "grade_many", "shutdown"]
