"""The classic family (`algorithm`): scikit-learn's algorithms on tables. Its record is in
`family`; the worker side is workers/trainers/classic."""
