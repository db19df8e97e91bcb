"""The course: exercise checks for students, the student release and grading for lecturers.

    checks     the check a student runs after each exercise (`from labkit.course import checks`)
    exercises  what each exercise's answer defines, may use, and builds on
    screen     reading an answer cell before anything runs it
    probes     what a check asks of an answer, as plain data
    subjects   an answer probed here, or in a runner process
    masters    the master notebooks' nbgrader marks
    release    the student notebooks
    runner     the process that holds one student's answers while they are checked
    judge      the grade of each check cell, decided outside the student's process
    grade      a class graded: notebooks run for feedback, checks judged, a gradebook
"""
