"""Competitions in a course: a hidden, labelled test set; students' models or predictions files
scored on it by jobs on the CPU queue (each model through its own limited process, as predict);
a public leaderboard while open, the private one once closed. The labels never leave the
service: no answer, log, event, error or file a student can reach carries them."""
