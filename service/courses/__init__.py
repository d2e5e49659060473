"""Courses: the courses themselves, their members' roles, rosters, a job's course, who may
see a course's jobs (access), and each student's budget (budgets; shares: service/lab/fair_share.py)."""
