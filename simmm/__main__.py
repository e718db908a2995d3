import os

from simmm.cli import main

if "TORCHELASTIC_RUN_ID" in os.environ:  # under torchrun: a failing process's error goes into the launcher's summary
    from torch.distributed.elastic.multiprocessing.errors import record

    main = record(main)

raise SystemExit(main())
