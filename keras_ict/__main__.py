import sys

from keras_ict.cli import main

sys.exit(main())
