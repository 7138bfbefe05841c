"""Answer grading shared by every recipe and the evaluation harness."""

from reasontrain.grading.answers import Verdict, extract_answer, gold_answer, grade

__all__ = ["Verdict", "extract_answer", "gold_answer", "grade"]
