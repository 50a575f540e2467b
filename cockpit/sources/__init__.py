"""The source model (issue 15, decision 0034): the cockpit asks the data-holding bodies while
the citizen is logged in and keeps nothing."""
