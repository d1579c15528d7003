import ApusConfig
import ApusMaster
import ApusWorker
print("apus")
