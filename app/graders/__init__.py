"""The grader engine: templates, each grader type, the python sandbox, formulas, validation
and batch grading. Imports neither FastAPI, Celery nor torch."""

from app.graders.base import Grader
from app.graders.batch import BatchGrader, BatchGrades
from app.graders.config import GraderConfig
from app.graders.engine import build_grader, grade
from app.graders.errors import BOOLEAN_FLAGS, DETAIL_FIELDS, GraderError, empty_errors
from app.graders.normalize import normalize_grader
from app.graders.result import GradeResult
from app.graders.sample import make_item, make_sample
from app.graders.validation import GraderValidationError, validate_grader

__all__ = [
    "BOOLEAN_FLAGS",
    "DETAIL_FIELDS",
    "BatchGrader",
    "BatchGrades",
    "GradeResult",
    "Grader",
    "GraderConfig",
    "GraderError",
    "GraderValidationError",
    "build_grader",
    "empty_errors",
    "grade",
    "make_item",
    "make_sample",
    "normalize_grader",
    "validate_grader",
]
