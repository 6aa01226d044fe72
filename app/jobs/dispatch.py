"""Fair dispatch: which waiting job a free worker takes next.

A queue message is a turn, not an order: the worker that receives one takes the fairest
waiting job, which need not be the job the message names. The broker alone is first in,
first out, so a project that queued 50 jobs would hold every worker until its last job
started, and another project's one job would wait behind all of them.

The order, over projects with a queued job nobody holds:
1. fewest jobs held by workers now (a project already training waits for one that is not);
2. served longest ago (`projects.last_dispatched_at`, never served first), so one worker
   alternates between projects rather than draining the older one;
3. the project's oldest waiting job first, and between projects the one that waited longer.

Only jobs placed on the named job's queue compete (`jobs.queue`, the memory tier a fitting
worker consumes): a message never has a worker take a job it cannot hold.

Every waiting job keeps at least one message in the queue (sent on creation, validation,
resume and by the sweep), so each message taken by another job's start leaves one behind for
the job it named. A message that finds nothing to take does nothing.
"""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.jobs.states import JobStatus
from app.tables import Job, Project

# statuses in which a job's lease counts as a worker busy for its project
_HELD_STATUSES = (JobStatus.VALIDATING_FILES, JobStatus.QUEUED, JobStatus.RUNNING)


def fair_order(session: Session, sent_job_id: str | None = None, limit: int = 8) -> list[str]:
    """The oldest waiting job of each project, fairest project first (at most `limit`).

    Waiting means queued with no worker on it and, given `sent_job_id` (the job the message
    named), placed on that job's queue; the named job is a candidate while it still validates
    its files too (no light worker checked it yet).
    """
    waiting_filter = Job.status == JobStatus.QUEUED.value
    if sent_job_id is not None:
        queue = session.scalar(select(Job.queue).where(Job.id == sent_job_id))
        waiting_filter = or_(
            waiting_filter & Job.queue.is_not_distinct_from(queue),
            (Job.id == sent_job_id) & (Job.status == JobStatus.VALIDATING_FILES.value),
        )
    waiting = (
        select(Job.project_id, func.min(Job.seq).label("first_seq"))
        .where(waiting_filter, Job.lease_owner.is_(None))
        .group_by(Job.project_id)
        .subquery()
    )
    held = (
        select(Job.project_id, func.count().label("held_jobs"))
        .where(
            Job.status.in_([status.value for status in _HELD_STATUSES]),
            Job.lease_owner.is_not(None),
        )
        .group_by(Job.project_id)
        .subquery()
    )
    rows = session.execute(
        select(Job.id)
        .join(waiting, Job.seq == waiting.c.first_seq)
        .join(Project, Project.id == waiting.c.project_id)
        .outerjoin(held, held.c.project_id == waiting.c.project_id)
        .order_by(
            func.coalesce(held.c.held_jobs, 0),
            func.coalesce(Project.last_dispatched_at, 0.0),
            waiting.c.first_seq,
        )
        .limit(limit)
    )
    return list(rows.scalars())
