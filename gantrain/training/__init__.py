"""Training: run preparation and locks (run), the shared build, the loop and its periodic work, the games
(games/: what one adversarial step is), losses and penalties, optimizers and schedules, augmentation,
statistics, the logger, data parallelism and the divergence diagnosis. May import eval, nets, data and
the leaves (checkpoint, config, errors, version, overrides, moved); never the commands or the api."""
