import ApusConfig
