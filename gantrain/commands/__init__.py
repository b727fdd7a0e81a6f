"""The console scripts, one module each (train: `gantrain`, evaluate: `gantrain-eval`, classifier:
`gantrain-classifier`, sample, export, translate, report), and what is only theirs (the sweep job and its
summary). They parse arguments and map errors to exit codes; they may import anything in gantrain, and
nothing in gantrain imports them."""
