"""``python -m forge_plugin_train ARGS`` = ``forge train ARGS``; what ``torchrun`` launches:

    torchrun --nproc-per-node 2 -m forge_plugin_train --spec run.yaml --strategy ddp
"""

from forge_plugin_train.cli import main

if __name__ == "__main__":
    main()
