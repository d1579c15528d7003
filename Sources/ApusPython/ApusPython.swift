import CApusSys
