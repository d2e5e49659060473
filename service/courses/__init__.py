"""Courses: the courses themselves, their members' roles, rosters, a job's course, and who may
see a course's jobs (access). Budgets and shares are stored here and reported, not yet enforced."""
